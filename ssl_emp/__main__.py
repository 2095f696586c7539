"""Allow ``python -m ssl_emp`` (and ``torchrun -m ssl_emp``)."""

from ssl_emp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
