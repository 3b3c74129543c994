from .cli import main

if __name__ == "__main__":  # `python -m ftlab`; importing the module (as the reference build does) runs nothing
    raise SystemExit(main())
