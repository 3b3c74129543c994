"""nbgrader settings every user of the hub shares: install as /etc/jupyter/nbgrader_config.py.

The course's own settings (sources, timeouts, the sandboxed executor) stay in the course
root's nbgrader_config.py, in the grader account's home, out of the students' reach.
"""

c = get_config()  # noqa: F821 -- injected by nbgrader's config loader

c.CourseDirectory.course_id = "ftlab"
c.Exchange.root = "/srv/nbgrader/exchange"
c.Exchange.path_includes_course = True  # several courses can share the exchange
