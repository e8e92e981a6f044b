#!/usr/bin/env python
"""``make book``: the course book from the executed notebooks (gensar_lib.book does the work)."""
import sys

from gensar_lib.book import main

if __name__ == "__main__":
    sys.exit(main())
