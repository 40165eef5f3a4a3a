"""The faust-streaming versions flitfeed's Faust workarounds were verified against.

The workarounds override private methods of Faust's consumer and wrap its producer buffer (see
:mod:`flitfeed.streams.faust_compat`); another release may rename them or change what they do, and a
guard that silently stops applying loses input again. So the worker refuses to start on a version not
listed here.

>>> check_faust_version("0.15.3")
>>> try:
...     check_faust_version("0.16.0")
... except UnverifiedFaustVersion as exc:
...     print(str(exc).split(";")[0])
faust-streaming 0.16.0 is installed, but flitfeed's Faust workarounds (flitfeed.streams.faust_compat) were verified against 0.15.3 only
"""

from __future__ import annotations

from importlib.metadata import version

from flitfeed.startup import DependencyUnavailable

#: Every faust-streaming release the workarounds were verified against (see the message below for how).
VERIFIED_FAUST_VERSIONS = ("0.15.3",)


class UnverifiedFaustVersion(DependencyUnavailable):
    """The installed faust-streaming is not one the workarounds were verified against.

    A :class:`~flitfeed.startup.DependencyUnavailable`: the CLI reports it in one line and exits with
    status 2, as for any dependency a service cannot start without.
    """


def installed_faust_version() -> str:
    return version("faust-streaming")


def check_faust_version(installed: str | None = None) -> None:
    """Raise :class:`UnverifiedFaustVersion` unless ``installed`` (default: the installed
    faust-streaming) is in :data:`VERIFIED_FAUST_VERSIONS`."""
    installed = installed_faust_version() if installed is None else installed
    if installed in VERIFIED_FAUST_VERSIONS:
        return
    raise UnverifiedFaustVersion(
        f"faust-streaming {installed} is installed, but flitfeed's Faust workarounds "
        f"(flitfeed.streams.faust_compat) were verified against {', '.join(VERIFIED_FAUST_VERSIONS)} only; "
        "they override private methods of Faust's consumer and producer buffer, which another release may "
        "change. Install the pinned version (pyproject.toml), or verify this one: add it to "
        "VERIFIED_FAUST_VERSIONS in streams/faust_compat/version.py, re-run tests/unit/test_worker_acks.py "
        "and the long kill run of tests/integration/test_crash_recovery.py (FLITFEED_KILL_ROUNDS=40, see "
        "README Known limits), and keep the change only if both pass."
    )
