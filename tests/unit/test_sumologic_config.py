"""The Sumo Logic collector's configuration, checked offline against the vendor's package.

roles/sumologic writes conf.d files that otelcol-sumo merges over the package's own
sumologic.yaml (`--config=sumologic.yaml --config=glob:conf.d/*.yaml`). The package cannot be
downloaded here, so `otelcol-sumo validate` cannot run in the unit tests; instead the role's
template tasks (read from tasks/config.yml, so a new one is rendered too) are run by Ansible on
the controller for each kind of host of the lab inventory, every file is merged over the
vendor's base configuration the way the collector merges its --config files, and the result is
checked for what would otherwise fail a production restart or silently collect nothing.

The vendor's base configuration and component list are fixtures under
fixtures/otelcol-sumo/, each naming the repository, path and commit it comes from. The last
tests break a rendered configuration on purpose and prove the checker refuses it.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "sumologic"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "otelcol-sumo"
ANSIBLE_PLAYBOOK = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible-playbook")
if not Path(ANSIBLE_PLAYBOOK).exists():
    ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")

KINDS = ("receivers", "processors", "exporters", "extensions", "connectors")
SIGNALS = ("logs", "metrics", "traces")
# Values that must never reach a conf.d file: the token and the database password are given
# to the render below and may only appear in the env files (tasks/config.yml).
TOKEN = "rendered-token-must-stay-in-env-file"
MYSQL_PASSWORD = "rendered-password-must-stay-in-env-file"
SECRET_KEY = re.compile(r"(token|password|passwd|secret|api_?key)$", re.I)
ENV_REF = re.compile(r"^\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}$")
# Where systemd-journald keeps the system journal: persistent and volatile.
JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal")
HOST_GROUPS = ("loadbalancers", "webservers", "databases", "servers")


def lab_groups():
    """{server: its groups} of the lab inventory (read by Ansible), the hosts the role renders for."""
    from ansible.inventory.manager import InventoryManager  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    manager = InventoryManager(loader=DataLoader(), sources=[str(ROOT / "inventory" / "lab")])
    return {host.name: {group.name for group in host.get_groups()} for host in manager.get_hosts("servers")}


# The lab inventory's servers: load balancers, web servers, and web servers that hold a database.
LAB_GROUPS = lab_groups()
LAB_HOSTS = tuple(sorted(LAB_GROUPS))


# --- The vendor's package, as the fixtures record it -----------------------------------------

def load_yaml(path):
    return yaml.safe_load(Path(path).read_text())


def vendor_base():
    return load_yaml(FIXTURES / "sumologic.yaml")


def builtin_types():
    """{kind: {component type}} of otelcol-sumo, from the builder manifest's modules."""
    manifest = load_yaml(FIXTURES / "components.yaml")
    suffixes = {"receivers": "receiver", "processors": "processor", "exporters": "exporter",
                "extensions": "extension", "connectors": "connector"}
    types = {}
    for kind, suffix in suffixes.items():
        names = set()
        for module in manifest[kind]:
            if module in manifest["types"]:
                names.add(manifest["types"][module])
            else:
                names.add(module[:-len(suffix)] if module.endswith(suffix) else module)
        types[kind] = names
    return types


# --- Rendering the role's files as the role does ------------------------------------------------



def infra_files_items(task):
    """The items of an infra_files task of the role (its files, and those its vars define)."""
    if "infra_files" not in task:
        return []
    files = task["infra_files"]["files"]
    items = files if isinstance(files, list) else []
    return items + [value for value in (task.get("vars") or {}).values() if isinstance(value, dict) and "dest" in value]


def template_tasks():
    """The templates tasks/config.yml writes (infra_files items with a template), as
    template tasks writing into the render directory."""
    tasks = []
    for task in load_yaml(ROLE / "tasks" / "config.yml"):
        for item in infra_files_items(task):
            template = item.get("template")
            if not template:
                continue
            assert item["dest"].startswith("{{ sumologic_confd_dir }}/"), f"{task['name']}: writes outside conf.d"
            tasks.append({"name": f"{task['name']}: {item['dest']}", "ansible.builtin.template": {
                "src": f"{ROLE}/templates/{template}", "mode": item["mode"],
                "dest": item["dest"].replace("{{ sumologic_confd_dir }}", "{{ out_dir }}/{{ inventory_hostname }}")}})
    assert tasks, "tasks/config.yml writes no template"
    return tasks


def env_file_variables():
    """The variables the role's env files give the collector (SUMOLOGIC_...=), from tasks/config.yml."""
    names = set()
    for task in load_yaml(ROLE / "tasks" / "config.yml"):
        for item in infra_files_items(task):
            names |= set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", str(item.get("content", "")), re.M))
    assert names, "tasks/config.yml writes no environment file"
    return names


def render(tmp_path):
    """Run the role's checks and its template tasks for the lab's servers; {host: {file: text}}."""
    play = [{
        "name": "Render the sumologic role's conf.d files on the controller",
        "hosts": "servers",
        "connection": "local",
        "gather_facts": False,
        "tasks": [
            {"name": "The role's checks (and its variables)",
             "ansible.builtin.include_role": {"name": "sumologic", "tasks_from": "validate", "public": True}},
            {"name": "Directory of this host's files",
             "ansible.builtin.file": {"path": "{{ out_dir }}/{{ inventory_hostname }}", "state": "directory",
                                      "mode": "0755"}},
            *template_tasks(),
        ],
    }]
    (tmp_path / "render.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    # The site's playbook group_vars, as site.yml (next to them) sees them.
    (tmp_path / "group_vars").symlink_to(ROOT / "group_vars")
    out = tmp_path / "out"
    extra = {"out_dir": str(out), "ansible_python_interpreter": sys.executable,
             "sumologic_installation_token": TOKEN, "sumologic_mysql_password": MYSQL_PASSWORD}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(ROOT / "inventory" / "lab"), str(tmp_path / "render.yml"),
                           "-e", json.dumps(extra)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {host.name: {path.name: path.read_text() for path in sorted(host.glob("*.yaml"))}
            for host in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render(tmp_path_factory.mktemp("sumologic"))


# --- The checker ---------------------------------------------------------------------------------

def merge(base, over):
    """otelcol's merge of its --config files: maps merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(over)


def strings(node, path=()):
    """Every (key path, string value) in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, path + (str(key),))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, path + (str(i),))
    elif isinstance(node, str):
        yield path, node


def check(files, base, types, prefix, secrets=(), env_vars=None):
    """Problems of conf.d `files` ({name: parsed document}) over the vendor's `base`; [] if none.

    Each problem names the file and the key. Files are merged in name order, as the glob is.
    """
    problems = []
    layers = [("sumologic.yaml", base)] + sorted(files.items())
    origin = {("service", "extensions"): "sumologic.yaml"}
    merged = {}
    for name, doc in layers:
        if not isinstance(doc, dict):
            problems.append(f"{name}: not a YAML map")
            continue
        for key in doc:
            if key not in KINDS + ("service",):
                problems.append(f"{name}: top-level key '{key}' is not a collector section")
        for kind in KINDS:
            for component in doc.get(kind) or {}:
                origin[(kind, component)] = name
        for pipeline in ((doc.get("service") or {}).get("pipelines") or {}):
            origin[("pipelines", pipeline)] = name
        if "extensions" in (doc.get("service") or {}):
            origin[("service", "extensions")] = name
        merged = merge(merged, doc)

    # Component types that exist in otelcol-sumo.
    for kind in KINDS:
        for component in merged.get(kind) or {}:
            ctype = component.split("/", 1)[0]
            if ctype not in types[kind]:
                problems.append(f"{origin[(kind, component)]}: {kind}.{component}: type '{ctype}' is not built "
                                f"into otelcol-sumo")

    # Pipelines that reference only defined components; every receiver used.
    service = merged.get("service") or {}
    pipelines = service.get("pipelines") or {}
    used = {kind: set() for kind in ("receivers", "processors", "exporters")}
    for pipeline, spec in pipelines.items():
        where = f"{origin[('pipelines', pipeline)]}: service.pipelines.{pipeline}"
        if pipeline.split("/", 1)[0] not in SIGNALS:
            problems.append(f"{where}: the signal must be one of {', '.join(SIGNALS)}")
        for kind in ("receivers", "processors", "exporters"):
            names = (spec or {}).get(kind) or []
            if kind != "processors" and not names:
                problems.append(f"{where}.{kind}: empty")
            for component in names:
                used[kind].add(component)
                if component not in (merged.get(kind) or {}) and component not in (merged.get("connectors") or {}):
                    problems.append(f"{where}.{kind}: '{component}' is not defined in any {kind} section")
    for receiver in merged.get("receivers") or {}:
        if receiver not in used["receivers"]:
            problems.append(f"{origin[('receivers', receiver)]}: receivers.{receiver}: in no pipeline, "
                            f"so never started")
    for processor in merged.get("processors") or {}:
        # The base's resourcedetection/system is the vendor's, for its own examples: ours must be used.
        if origin[("processors", processor)] != "sumologic.yaml" and processor not in used["processors"]:
            problems.append(f"{origin[('processors', processor)]}: processors.{processor}: in no pipeline")

    # Extensions: the enabled ones defined; every storage reference an enabled extension.
    enabled = service.get("extensions") or []
    for extension in enabled:
        if extension not in (merged.get("extensions") or {}):
            problems.append(f"{origin[('service', 'extensions')]}: service.extensions: '{extension}' is not defined")
    for kind in ("receivers", "exporters"):
        for component, settings in (merged.get(kind) or {}).items():
            for path, value in strings(settings or {}):
                if path[-1] == "storage" and value not in enabled:
                    problems.append(f"{origin[(kind, component)]}: {kind}.{component}.{'.'.join(path)}: "
                                    f"'{value}' is not an enabled extension")

    # What each receiver type needs.
    for component, settings in (merged.get("receivers") or {}).items():
        ctype, settings = component.split("/", 1)[0], settings or {}
        where = f"{origin[('receivers', component)]}: receivers.{component}"
        if ctype == "haproxy":
            # The receiver GETs `endpoint + ";csv"` when the URL's scheme is http(s) and dials a unix
            # socket otherwise; the haproxy role's stats page (haproxy_stats_bind) is plain HTTP on loopback.
            url = urlsplit(str(settings.get("endpoint", "")))
            if url.scheme != "http" or not url.hostname or not url.path.startswith("/"):
                problems.append(f"{where}.endpoint: '{settings.get('endpoint')}' is not an http:// URL "
                                f"of the stats page")
        elif ctype == "nginx":
            url = urlsplit(str(settings.get("endpoint", "")))
            if url.scheme not in ("http", "https") or not url.hostname:
                problems.append(f"{where}.endpoint: '{settings.get('endpoint')}' is not an http(s) URL")
        elif ctype == "journald":
            # Unset, journalctl reads every system journal (persistent and volatile); set, only that one.
            directory = settings.get("directory")
            if directory is not None and not any(str(directory).rstrip("/") == d or str(directory).startswith(d + "/")
                                                 for d in JOURNAL_DIRS):
                problems.append(f"{where}.directory: '{directory}' is not a journal directory "
                                f"({', '.join(JOURNAL_DIRS)})")
            if not settings.get("matches") and not settings.get("units"):
                problems.append(f"{where}: neither matches nor units: the whole journal would be sent")
        elif ctype == "filelog":
            include = settings.get("include") or []
            if not include:
                problems.append(f"{where}.include: empty")
            for i, pattern in enumerate(include):
                if not str(pattern).startswith("/"):
                    problems.append(f"{where}.include.{i}: '{pattern}' is not an absolute path")
        elif ctype == "mysql":
            if settings.get("transport") == "unix" and not str(settings.get("endpoint", "")).startswith("/"):
                problems.append(f"{where}.endpoint: '{settings.get('endpoint')}' is not a socket path")

    # Secrets: never a value, only an environment reference the role's env files provide.
    for name, doc in sorted(files.items()):
        for path, value in strings(doc):
            key = ".".join(path)
            if any(secret and secret in value for secret in secrets):
                problems.append(f"{name}: {key}: holds a secret value")
            elif SECRET_KEY.search(path[-1]):
                ref = ENV_REF.match(value)
                if not ref:
                    problems.append(f"{name}: {key}: a secret must be an environment reference ${{env:NAME}}, "
                                    f"not a value")
                elif env_vars is not None and ref.group(1) not in env_vars:
                    problems.append(f"{name}: {key}: ${{{ref.group(1)}}} is in none of the role's env files "
                                    f"({', '.join(sorted(env_vars))})")

    # _sourceCategory: <prefix>/<host group>/<source words>, inserted by a resource processor that
    # every one of the role's pipelines runs.
    shape = re.compile(rf"^{re.escape(prefix)}/({'|'.join(HOST_GROUPS)})/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    categorized = set()
    for component, settings in (merged.get("processors") or {}).items():
        for i, attribute in enumerate((settings or {}).get("attributes") or []):
            if attribute.get("key") != "_sourceCategory":
                continue
            where = f"{origin[('processors', component)]}: processors.{component}.attributes.{i}"
            if component.split("/", 1)[0] != "resource":
                problems.append(f"{where}: _sourceCategory is a resource attribute (resource processor)")
            if origin[("processors", component)] != "sumologic.yaml":
                categorized.add(component)
            if not shape.match(str(attribute.get("value", ""))):
                problems.append(f"{where}.value: '{attribute.get('value')}' is not {prefix}/<host group>/<source>")
    for pipeline, spec in pipelines.items():
        ours = origin[("pipelines", pipeline)] != "sumologic.yaml"
        if ours and not categorized & set((spec or {}).get("processors") or []):
            problems.append(f"{origin[('pipelines', pipeline)]}: service.pipelines.{pipeline}.processors: "
                            f"no processor sets _sourceCategory")
    return problems


def parsed(files):
    return {name: yaml.safe_load(text) for name, text in files.items()}


def lab_prefix():
    return load_yaml(ROOT / "inventory" / "lab" / "group_vars" / "all.yml")["sumologic_source_category_prefix"]


def check_host(files):
    return check(parsed(files), vendor_base(), builtin_types(), lab_prefix(),
                 secrets=(TOKEN, MYSQL_PASSWORD), env_vars=env_file_variables())


# --- The role's files --------------------------------------------------------------------------

def test_every_kind_of_lab_host_is_rendered(rendered):
    assert tuple(rendered) == LAB_HOSTS
    for host, files in rendered.items():
        assert "infra-collector.yaml" in files, host


def test_the_fixtures_are_what_the_checker_needs():
    types = builtin_types()
    # The types the vendor's base configuration uses are all built in (the fixtures agree).
    assert check({}, vendor_base(), types, lab_prefix()) == []
    assert {"hostmetrics", "journald", "filelog", "nginx", "haproxy", "mysql", "otlp"} <= types["receivers"]
    assert {"memory_limiter", "resource", "batch", "sumologic"} <= types["processors"]


@pytest.mark.parametrize("host", LAB_HOSTS)
def test_rendered_configuration_passes_the_offline_check(rendered, host):
    problems = check_host(rendered[host])
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("host", LAB_HOSTS)
def test_each_host_collects_its_sources_with_the_documented_categories(rendered, host):
    """README "Monitoring": the sources each kind of host gets and their _sourceCategory."""
    prefix = lab_prefix()
    merged = {}
    for doc in parsed(rendered[host]).values():
        merged = merge(merged, doc)
    categories = {attribute["value"] for settings in merged["processors"].values()
                  for attribute in settings["attributes"] if attribute["key"] == "_sourceCategory"}
    receivers = {name.split("/", 1)[0] for name in merged["receivers"]}
    groups = LAB_GROUPS[host]
    if "loadbalancers" in groups:
        expected = {"loadbalancers/host", "loadbalancers/auth", "loadbalancers/haproxy/metrics",
                    "loadbalancers/haproxy/access"}
        wanted = {"hostmetrics", "journald", "haproxy", "filelog"}
    else:
        expected = {"webservers/host", "webservers/auth", "webservers/nginx/metrics", "webservers/nginx/access",
                    "webservers/nginx/error"}
        wanted = {"hostmetrics", "journald", "nginx", "filelog"}
    if groups & {"db_primary", "db_replica"}:
        expected |= {"databases/mysql/metrics", "databases/mysql/error"}
        wanted |= {"mysql"}
    assert receivers == wanted
    assert categories == {f"{prefix}/{category}" for category in expected}
    extension = merged["extensions"]["sumologic"]
    assert extension["installation_token"] == "${env:SUMOLOGIC_INSTALLATION_TOKEN}"
    assert extension["collector_name"] == host


# --- Mutation proof: a broken configuration is refused ---------------------------------------------

def break_unknown_receiver(files):
    doc = files["infra-sources.yaml"]
    doc["receivers"] = {"hostmetricz/host-metrics": doc["receivers"].pop("hostmetrics/host-metrics")}
    doc["service"]["pipelines"]["metrics/host-metrics"]["receivers"] = ["hostmetricz/host-metrics"]
    return "infra-sources.yaml: receivers.hostmetricz/host-metrics: type 'hostmetricz'"


def break_undefined_processor(files):
    files["infra-sources.yaml"]["service"]["pipelines"]["logs/auth"]["processors"].append("batch")
    return "infra-sources.yaml: service.pipelines.logs/auth.processors: 'batch' is not defined"


def break_haproxy_https(files):
    settings = files["infra-sources.yaml"]["receivers"]["haproxy/haproxy-metrics"]
    settings["endpoint"] = settings["endpoint"].replace("http://", "https://")
    return "infra-sources.yaml: receivers.haproxy/haproxy-metrics.endpoint: 'https://"


def break_haproxy_schemeless(files):
    # The vendor's own example form: the receiver would dial it as a unix socket.
    files["infra-sources.yaml"]["receivers"]["haproxy/haproxy-metrics"]["endpoint"] = "localhost:8404/stats"
    return "infra-sources.yaml: receivers.haproxy/haproxy-metrics.endpoint: 'localhost:8404/stats'"


def break_literal_token(files):
    files["infra-collector.yaml"]["extensions"]["sumologic"]["installation_token"] = "abc123literal"
    return "infra-collector.yaml: extensions.sumologic.installation_token: a secret must be an environment reference"


def break_leaked_token(files):
    files["infra-collector.yaml"]["extensions"]["sumologic"]["collector_fields"]["note"] = TOKEN
    return "infra-collector.yaml: extensions.sumologic.collector_fields.note: holds a secret value"


def break_unknown_env_variable(files):
    files["infra-collector.yaml"]["extensions"]["sumologic"]["installation_token"] = "${env:SUMO_TOKEN}"
    return "infra-collector.yaml: extensions.sumologic.installation_token: ${SUMO_TOKEN} is in none"


def break_journal_directory(files):
    files["infra-sources.yaml"]["receivers"]["journald/auth"]["directory"] = "/var/log"
    return "infra-sources.yaml: receivers.journald/auth.directory: '/var/log' is not a journal directory"


def break_relative_log(files):
    files["infra-sources.yaml"]["receivers"]["filelog/haproxy-log"]["include"] = ["haproxy.log"]
    return "infra-sources.yaml: receivers.filelog/haproxy-log.include.0: 'haproxy.log' is not an absolute path"


def break_unused_receiver(files):
    del files["infra-sources.yaml"]["service"]["pipelines"]["logs/haproxy-log"]
    return "infra-sources.yaml: receivers.filelog/haproxy-log: in no pipeline"


def break_category(files):
    attributes = files["infra-sources.yaml"]["processors"]["resource/haproxy-log"]["attributes"]
    attributes[0]["value"] = "lab/foobar/haproxy//access"
    return "infra-sources.yaml: processors.resource/haproxy-log.attributes.0.value: 'lab/foobar/haproxy//access'"


def break_storage(files):
    files["infra-sources.yaml"]["receivers"]["filelog/haproxy-log"]["storage"] = "filestorage"
    return "infra-sources.yaml: receivers.filelog/haproxy-log.storage: 'filestorage' is not an enabled extension"


MUTATIONS = [break_unknown_receiver, break_undefined_processor, break_haproxy_https, break_haproxy_schemeless,
             break_literal_token, break_leaked_token, break_unknown_env_variable, break_journal_directory,
             break_relative_log, break_unused_receiver, break_category, break_storage]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.__name__.removeprefix("break_"))
def test_the_checker_refuses_a_broken_configuration(rendered, mutation):
    files = parsed(rendered[next(h for h in LAB_HOSTS if "loadbalancers" in LAB_GROUPS[h])])
    expected = mutation(files)
    problems = check(files, vendor_base(), builtin_types(), lab_prefix(),
                     secrets=(TOKEN, MYSQL_PASSWORD), env_vars=env_file_variables())
    assert any(problem.startswith(expected) for problem in problems), \
        f"expected a problem starting {expected!r}, got:\n" + "\n".join(problems)

