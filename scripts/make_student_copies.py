#!/usr/bin/env python
"""``make student``: the student copies of the notebooks (gensar_lib.student_copies does the work)."""
import sys

from gensar_lib.student_copies import main

if __name__ == "__main__":
    sys.exit(main())
