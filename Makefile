# The two commands of README.md; each sets itself up first.
.PHONY: setup run test

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run_notebooks.sh

test: setup
	GENSAR_PROFILE=tiny GENSAR_FIGURES=$(CURDIR)/build/test-figures .venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=900 -p no:cacheprovider

# The course book: static HTML in build/book/ from the notebooks as `make run` executed them (nothing runs again).
.PHONY: book
book: setup
	.venv/bin/python scripts/build_book.py --notebooks notebooks/executed --out build/book

# Student copies: notebooks/NN_*.ipynb with exercise answers removed, written to student/ (replaced as a whole).
.PHONY: student
student: setup
	.venv/bin/python scripts/make_student_copies.py --src notebooks --out student
