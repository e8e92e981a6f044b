"""gensar_lib.session: the recorder of printed warnings (``warnings_printed``) that the student test reads."""
from __future__ import annotations

import logging
import warnings

from gensar_lib import session


class FakeSession:
    def __init__(self):
        self.values = {}

    def record(self, **values):
        self.values.update({k: list(v) for k, v in values.items()})


def test_warnings_and_log_records_are_recorded_and_still_printed(monkeypatch, capsys):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # restored after the test
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    fake = FakeSession()
    session._record_warnings(fake)
    assert fake.values == {"warnings_printed": []}

    warnings.warn("careful", UserWarning)
    logging.getLogger("gensar.test.alone").warning("no handler of its own")
    assert fake.values["warnings_printed"][0].startswith("UserWarning: careful (")
    assert fake.values["warnings_printed"][1] == "WARNING gensar.test.alone: no handler of its own"
    assert "no handler of its own" in capsys.readouterr().err  # printed as logging's last resort would

    own = logging.getLogger("gensar.test.own")
    monkeypatch.setattr(own, "handlers", [logging.NullHandler()])
    own.warning("handled elsewhere")
    assert fake.values["warnings_printed"][2] == "WARNING gensar.test.own: handled elsewhere"
    assert "handled elsewhere" not in capsys.readouterr().err  # its own handler decides, not the recorder

    logging.getLogger("gensar.test.alone").info("below WARNING")
    assert len(fake.values["warnings_printed"]) == 3

    session._record_warnings(FakeSession())  # a new notebook starts with none
    assert session._PRINTED.texts == []
