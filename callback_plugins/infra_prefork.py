"""Load the Jinja filter and test plugins once, in the controller's main process, before any task runs.

Ansible runs each task on each host in a worker process forked from the main process. The first
filter or test a worker's templating uses makes the plugin loader import every filter (or test)
plugin file it can find, Ansible's own and this project's, and build a wrapper for each: about
40 ms of a 2-CPU controller's time per task and host, repeated in every worker, because a worker
exits with what it loaded. Loaded here once, at the start of the playbook, every worker inherits
them through the fork. Measured on the lab (docs/benchmarks.md): a task on five servers went from
0.19 s to 0.10 s, a no-change run of site.yml from 43.5 s to 36.8 s.

Nothing to enable: ansible.cfg's ``callback_plugins`` finds it, and it loads whatever
``callbacks_enabled`` says (CALLBACK_NEEDS_ENABLED is False). It prints nothing and changes no
result; if the loader's interface ever changes, it says so at -vvv and the run goes on, slower.
"""

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader
from ansible.utils.display import Display

DOCUMENTATION = r"""
name: infra_prefork
type: aggregate
short_description: Load the Jinja filter and test plugins before the workers fork
description:
  - Loads every filter and test plugin in the controller's main process at the start of a
    playbook, so that each forked worker inherits them instead of loading them again.
  - Prints nothing and changes no result.
"""

display = Display()


def preload(loaders=(filter_loader, test_loader)):
    """Load every plugin of each Jinja plugin loader; return how many each has, by loader type.

    ``all()`` builds and caches the loader's wrappers of every filter (test) plugin file on its
    paths, the work a worker process would otherwise repeat at its first filter (test).
    """
    return {loader.type: sum(1 for _ in loader.all()) for loader in loaders}


class CallbackModule(CallbackBase):
    """Preloads the Jinja plugins when the playbook starts."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "infra_prefork"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_start(self, playbook):
        try:
            counts = preload()
        except Exception as ex:  # pylint: disable=broad-exception-caught
            # An optimisation only: a loader that works otherwise costs time, not the run.
            display.vvv(f"infra_prefork: Jinja plugins not preloaded ({ex!r}); each worker loads its own")
            return
        display.vvv(f"infra_prefork: preloaded {counts} Jinja plugins for the workers")
