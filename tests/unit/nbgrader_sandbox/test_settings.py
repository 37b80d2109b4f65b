"""One settings object for the grader (c.GradingSandbox): every limit has one default, shared by the processes that
carry it, and a wrong value names the setting and what it expects."""

from __future__ import annotations

import dataclasses

import pytest
from traitlets import TraitError
from traitlets.config import Config

from nbgrader_sandbox import remote, sandbox, settings
from nbgrader_sandbox.settings import GradingSandbox


def test_the_limits_carried_into_other_processes_default_to_the_settings():
    s = GradingSandbox()
    carried = {f.name: f.default for f in dataclasses.fields(remote.Limits)}
    for name in ("call_seconds", "start_seconds", "memory_bytes", "cpu_seconds", "uid_base"):
        assert carried[name] == getattr(s, name), name
    boxed = {f.name: f.default for f in dataclasses.fields(sandbox.Limits)}
    assert (boxed["memory_bytes"], boxed["cpu_seconds"]) == (s.memory_bytes, s.cpu_seconds)
    assert boxed["processes"] == settings.SERVER_PROCESSES and s.processes == settings.KERNEL_PROCESSES


def test_every_time_limit_is_read_from_the_one_object():
    c = Config()
    c.GradingSandbox.call_seconds = 2.5
    c.GradingSandbox.notebook_cpu_seconds = 7.0
    s = GradingSandbox(config=c)
    assert (s.call_seconds, s.notebook_cpu_seconds, s.start_seconds) == (2.5, 7.0, settings.START_SECONDS)


@pytest.mark.parametrize("name", ["call_seconds", "start_seconds", "checker_wall_seconds", "notebook_cpu_seconds",
                                  "notebook_wall_seconds"])
def test_a_time_that_is_not_positive_names_its_setting(name):
    c = Config()
    setattr(c.GradingSandbox, name, 0.0)
    with pytest.raises(TraitError, match=rf"c\.GradingSandbox\.{name} must be a positive number of seconds"):
        GradingSandbox(config=c)
