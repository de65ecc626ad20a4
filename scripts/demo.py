"""The README quickstart's demo; the logic is ``vreason demo`` (:mod:`lmms_vreason.testing.demo`)."""

from lmms_vreason.testing.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
