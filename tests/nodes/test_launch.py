"""The package as a ROS 2 Humble citizen: launch files, executables, params, rviz and the Humble/3.10 subset.

Here (rclpy from PyPI) launch_ros, launch_pytest and ros2 are absent, so the launch files are read, not run:
static checks that run everywhere, the one-process executable ``use_composition:=true`` starts run as a
subprocess, and the real ``ros2 launch`` bring-up test runs where launch_pytest is installed (else skips).
"""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gps_denied_nav.nodes import names
from gps_denied_nav.replay.graph import private_domain_id

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = ROOT / "launch"
LAUNCH_FILES = sorted(LAUNCH_DIR.glob("*.launch.py"))
GRAPH_LAUNCH = LAUNCH_DIR / "gps_denied_nav.launch.py"
PARAMS = ROOT / "params" / "gps_denied_nav.yaml"
PACKAGE = "gps_denied_nav"
GRAPH_EXECUTABLE = "gps_denied_nav_graph"
ACTIVE = "all nodes active"  # the lifecycle manager's diagnostics message once every node is active
HAVE_LAUNCH_TESTING = all(importlib.util.find_spec(m) for m in ("launch", "launch_ros", "launch_pytest"))
NO_LAUNCH = "launch_ros/launch_pytest are not installed (not on PyPI; they come with a full ROS 2 install)"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def console_scripts() -> dict[str, str]:
    """setup.py's console scripts, read with ast: executable name -> 'module:function'."""
    for node in ast.walk(_tree(ROOT / "setup.py")):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "console_scripts" for t in node.targets):
            return dict(tuple(p.strip() for p in entry.split("=")) for entry in ast.literal_eval(node.value))
    raise AssertionError("setup.py has no literal `console_scripts = [...]`")


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level NAME = <literal> assignments of a launch file."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def _bindings(tree: ast.Module) -> dict[str, list]:
    """What each name can hold: string constants, and loop/comprehension targets over a literal tuple."""
    constants = _constants(tree)
    bound = {k: [v] for k, v in constants.items() if isinstance(v, str)}
    loops = [g for n in ast.walk(tree) for g in getattr(n, "generators", [])]
    loops += [n for n in ast.walk(tree) if isinstance(n, ast.For)]
    for loop in loops:
        if isinstance(loop.iter, (ast.Tuple, ast.List)):
            rows = ast.literal_eval(loop.iter)
        elif (rows := constants.get(getattr(loop.iter, "id", None))) is None:
            continue
        targets = loop.target.elts if isinstance(loop.target, ast.Tuple) else [loop.target]
        for i, target in enumerate(targets):
            bound.setdefault(target.id, []).extend(row[i] if len(targets) > 1 else row for row in rows)
    return bound


def _strings(expr: ast.expr, bound: dict[str, list], where: str) -> list[str]:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [expr.value]
    assert isinstance(expr, ast.Name) and expr.id in bound, f"{where}: cannot resolve {ast.unparse(expr)}"
    return bound[expr.id]


def _calls(tree: ast.Module, function: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == function]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def launch_arguments(path: Path) -> tuple[set[str], set[str], set[str]]:
    """(declared, declared without a default, referenced through LaunchConfiguration) of one launch file."""
    tree, bound = _tree(path), _bindings(_tree(path))
    declare = _calls(tree, "DeclareLaunchArgument")
    declared = {s for c in declare for s in _strings(c.args[0], bound, path.name)}
    required = {s for c in declare if _keyword(c, "default_value") is None
                for s in _strings(c.args[0], bound, path.name)}
    used = {s for c in _calls(tree, "LaunchConfiguration") for s in _strings(c.args[0], bound, path.name)}
    return declared, required, used


def executables(path: Path) -> set[str]:
    """Executables of this package that a launch file starts (calls naming another package are skipped)."""
    tree = _tree(path)
    bound = _bindings(tree)
    found = set()
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or _keyword(call, "executable") is None:
            continue
        package = _keyword(call, "package")
        if package is not None and _strings(package, bound, path.name) != [PACKAGE]:
            continue  # rviz2 and the like
        found |= set(_strings(_keyword(call, "executable"), bound, path.name))
    return found


def test_launch_files_start_only_installed_console_scripts():
    scripts = console_scripts()
    for path in LAUNCH_FILES:
        assert executables(path) <= set(scripts), path.name
    assert executables(GRAPH_LAUNCH) == {*names.MANAGED_NODES, *names.OPTIONAL_NODES, names.LIFECYCLE_MANAGER,
                                         GRAPH_EXECUTABLE}


def test_console_scripts_exist_and_are_installed():
    """Each entry point's module defines its function, and the venv's install is current (scripts/setup.sh)."""
    scripts = console_scripts()
    for name, target in scripts.items():
        module, function = target.split(":")
        source = ROOT / "src" / (module.replace(".", "/") + ".py")
        assert function in {n.name for n in _tree(source).body if isinstance(n, ast.FunctionDef)}, name
    installed = {e.name for e in importlib.metadata.entry_points(group="console_scripts")
                 if e.value.startswith(f"{PACKAGE}.")}
    assert set(scripts) <= installed, "re-install the package: pip install -e . (scripts/setup.sh does it)"


def test_every_launch_configuration_is_declared():
    for path in LAUNCH_FILES:
        declared, _, used = launch_arguments(path)
        assert used <= declared, f"{path.name}: used but never declared: {sorted(used - declared)}"


def test_included_launch_files_get_declared_arguments():
    """An include passes only arguments the included file declares, and every one it requires."""
    for path in LAUNCH_FILES:
        tree = _tree(path)
        own, _, _ = launch_arguments(path)
        for include in _calls(tree, "IncludeLaunchDescription"):
            target = [n.value for n in ast.walk(include) if isinstance(n, ast.Constant)
                      and isinstance(n.value, str) and n.value.endswith(".launch.py")]
            assert len(target) == 1, f"{path.name}: which launch file does the include name?"
            declared, required, _ = launch_arguments(LAUNCH_DIR / target[0])
            passed = {k.value for k in _keyword(include, "launch_arguments").func.value.keys}  # {...}.items()
            assert passed <= declared, f"{path.name} passes {sorted(passed - declared)} to {target[0]}"
            assert required <= passed | own, f"{path.name} leaves {sorted(required - passed - own)} unset"


def test_launch_files_use_the_graph_names():
    graph = _constants(_tree(GRAPH_LAUNCH))
    assert graph["MANAGED"] == names.MANAGED_NODES
    assert tuple(name for _, name in graph["OPTIONAL"]) == names.OPTIONAL_NODES
    inputs = (names.IMAGE, names.CAMERA_INFO, names.IMU, names.BARO, names.GNSS_FIX)
    assert {topic for _, topic in graph["SENSOR_INPUTS"]} == {names.relative(t) for t in inputs}
    from gps_denied_nav.sim.clip import TOPIC_TYPES

    assert set(_constants(_tree(LAUNCH_DIR / "replay.launch.py"))["BAG_TOPICS"]) == set(TOPIC_TYPES)


def test_params_files_name_graph_nodes():
    """Keys are `node` or `/**/node` (any namespace); each holds only ros__parameters."""
    nodes = {*names.MANAGED_NODES, *names.OPTIONAL_NODES, names.LIFECYCLE_MANAGER}
    for path in sorted((ROOT / "params").glob("*.yaml")):
        for key, block in yaml.safe_load(path.read_text()).items():
            assert key.removeprefix("/**/") in nodes, f"{path.name}: {key}"
            assert set(block) == {"ros__parameters"}, f"{path.name}: {key}"


def test_setup_installs_launch_rviz_and_params():
    call = next(c for c in _calls(_tree(ROOT / "setup.py"), "setup"))
    data_files = {ast.unparse(t.elts[0]): ast.unparse(t.elts[1]) for t in _keyword(call, "data_files").elts}
    assert data_files["f'share/{package_name}/launch'"] == "glob('launch/*.launch.py')"
    assert data_files["f'share/{package_name}/params'"] == "glob('params/*.yaml')"
    assert data_files["f'share/{package_name}/rviz'"] == "glob('rviz/*.rviz')"
    assert {p.name for p in LAUNCH_DIR.iterdir()} == {p.name for p in LAUNCH_FILES}  # nothing the glob misses


def test_rviz_config_shows_the_graph_outputs():
    config = yaml.safe_load((ROOT / "rviz" / "gps_denied_nav.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == names.MAP_FRAME
    topics = {d["Class"].split("/")[-1] + " " + d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    graph_topics = {names.relative(v) for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    assert {t.split(" ")[1] for t in topics} <= graph_topics  # relative: rviz2 in a namespace sees that graph
    assert {f"Path {names.relative(names.PATH)}", f"PoseWithCovariance {names.relative(names.VISUAL_FIX_POSE)}",
            f"Odometry {names.relative(names.ODOMETRY)}"} <= topics


def test_every_python_file_parses_as_python_3_10():
    """The Jetson's Humble runs Python 3.10: no `except*`, no 3.12 f-strings or type statements."""
    files = [ROOT / "setup.py"]
    files += [p for d in ("src", "launch", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))


# What rclpy (Kilted) and Python 3.11 have and Humble (rclpy 3.3, Python 3.10) has not.
NOT_IN_HUMBLE = {
    "try_shutdown": "rclpy.try_shutdown() came after Humble: `if rclpy.ok(): rclpy.shutdown()`",
    "qos_profile_best_available": "the 'best available' QoS policies came after Humble",
    "EventsExecutor": "rclpy's events executor came after Humble",
    "autostart": "create_timer(..., autostart=) is Kilted's",
    "with rclpy.init": "rclpy.init() is a context manager only after Humble",
    "with Node": "nodes are context managers only after Humble: destroy_node() in `finally`",
    "runtime generic": "Publisher[...] etc. are generic only after Humble: `from __future__ import annotations`",
    "tomllib": "Python 3.11", "Self": "typing.Self is Python 3.11", "UTC": "datetime.UTC is Python 3.11",
    "StrEnum": "enum.StrEnum is Python 3.11",
}
GENERIC_ENTITIES = {"Publisher", "Subscription", "Client", "Service", "Timer", "Future"}
PYTHON_3_11 = {"tomllib": {"tomllib"}, "Self": {"typing.Self"}, "UTC": {"datetime.UTC"},
               "StrEnum": {"enum.StrEnum"}}  # key of NOT_IN_HUMBLE -> import or attribute spellings


def humble_violations(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, key of NOT_IN_HUMBLE) for each use of something Humble's rclpy or Python 3.10 lacks."""
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and n.names[0].name == "annotations"
               for n in tree.body)
    annotations = {id(sub) for n in ast.walk(tree) for a in _annotations(n) for sub in ast.walk(a)} if lazy else set()
    found = []
    for node in ast.walk(tree):
        used = {getattr(node, "attr", None), getattr(node, "id", None)}
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            used |= {a.name for a in node.names} | {f"{getattr(node, 'module', '')}.{a.name}" for a in node.names}
        if isinstance(node, ast.Attribute):
            used.add(f"{ast.unparse(node.value)}.{node.attr}")
        found += [(node.lineno, key) for key, spellings in PYTHON_3_11.items() if used & spellings]
        found += [(node.lineno, k) for k in ("try_shutdown", "qos_profile_best_available", "EventsExecutor")
                  if k in used]
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "create_timer" \
                and _keyword(node, "autostart") is not None:
            found.append((node.lineno, "autostart"))
        for item in getattr(node, "items", []) if isinstance(node, ast.With) else []:
            callee = ast.unparse(item.context_expr.func) if isinstance(item.context_expr, ast.Call) else ""
            if callee == "rclpy.init" or callee.endswith("Node"):
                found.append((node.lineno, "with rclpy.init" if callee == "rclpy.init" else "with Node"))
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) in GENERIC_ENTITIES \
                and id(node) not in annotations:
            found.append((node.lineno, "runtime generic"))
    return found


def _annotations(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]
        return [a.annotation for a in args if a is not None and a.annotation is not None] + \
            ([node.returns] if node.returns is not None else [])
    return [node.annotation] if isinstance(node, ast.AnnAssign) else []


def test_humble_violations_are_detected():
    code = ("import rclpy\nfrom rclpy.publisher import Publisher\nwith rclpy.init():\n    pass\n"
            "rclpy.try_shutdown()\nnode.create_timer(1.0, cb, autostart=False)\nx: Publisher[int] = None\n"
            "from rclpy.executors import EventsExecutor\nfrom typing import Self\n")
    assert {k for _, k in humble_violations(ast.parse(code))} == {"with rclpy.init", "try_shutdown", "autostart",
                                                                  "runtime generic", "EventsExecutor", "Self"}
    assert humble_violations(ast.parse("from __future__ import annotations\ndef f(p: Publisher[int]): pass\n")) == []


def test_no_api_that_humble_lacks():
    problems = [f"{p.relative_to(ROOT)}:{line}: {NOT_IN_HUMBLE[key]}"
                for d in ("src", "launch") for p in sorted((ROOT / d).rglob("*.py"))
                for line, key in humble_violations(_tree(p))]
    assert not problems, "\n".join(problems)


def wait_for_manager(domain_id: int, until: str, timeout_s: float, process: subprocess.Popen | None = None):
    """The lifecycle manager's last DiagnosticStatus on /diagnostics once its message is ``until`` (or the
    last one seen at the timeout, or None), watched from a context of our own on ``domain_id``."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("test_launch_watch", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    seen = []
    node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, lambda msg: seen.extend(
        s for s in msg.status if s.name.endswith(names.LIFECYCLE_MANAGER)), 50)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (process is None or process.poll() is None):
            executor.spin_once(timeout_sec=0.2)
            if seen and seen[-1].message == until:
                break
        return seen[-1] if seen else None
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_graph_executable_hosts_the_graph_in_a_namespace_and_stops_on_sigint(small_corpus, tmp_path):
    """`gps_denied_nav_graph` with a --ros-args command line as ros2 launch gives it: the whole graph comes
    up in /uav7, and Ctrl-C brings the nodes down in order before the process exits."""
    domain_id = private_domain_id()
    log = tmp_path / "graph.log"
    command = [sys.executable, "-m", "gps_denied_nav.nodes.graph_main", "--ros-args", "--params-file", str(PARAMS),
               "-p", f"corpus_dir:={small_corpus}", "-r", "__ns:=/uav7"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, env={**os.environ, "ROS_DOMAIN_ID": str(domain_id)}, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        status = wait_for_manager(domain_id, ACTIVE, timeout_s=120.0, process=process)
        assert status is not None and status.message == ACTIVE, log.read_text()[-3000:]
        assert status.hardware_id == f"/uav7/{names.LIFECYCLE_MANAGER}"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert all(f"{node}: cleanup ok" in output for node in names.MANAGED_NODES), output[-3000:]


def test_launch_description_with_launch_ros():
    if not HAVE_LAUNCH_TESTING:
        pytest.skip(NO_LAUNCH)
    from launch_ros.actions import LifecycleNode, Node

    spec = importlib.util.spec_from_file_location("gdn_launch", GRAPH_LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description().entities
    assert len([e for e in entities if isinstance(e, LifecycleNode)]) == len(names.MANAGED_NODES)
    assert len([e for e in entities if type(e) is Node]) == 2  # the manager, and the one-process host


if HAVE_LAUNCH_TESTING:
    import launch_pytest
    from launch import LaunchDescription
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    @launch_pytest.fixture
    def graph_launch(small_corpus):
        arguments = {"corpus_dir": str(small_corpus), "params_file": str(PARAMS), "threads_params_file": str(PARAMS),
                     "namespace": "uav7"}
        return LaunchDescription([
            IncludeLaunchDescription(PythonLaunchDescriptionSource(str(GRAPH_LAUNCH)),
                                     launch_arguments=arguments.items()),
            launch_pytest.actions.ReadyToTest(),
        ])

    @pytest.mark.launch(fixture=graph_launch)
    def test_ros2_launch_brings_the_graph_up():
        """One process per node, started by ros2 launch: the manager reports every node active."""
        status = wait_for_manager(int(os.environ.get("ROS_DOMAIN_ID", "0")), ACTIVE, timeout_s=120.0)
        assert status is not None and status.message == ACTIVE
else:
    def test_ros2_launch_brings_the_graph_up():
        pytest.skip(NO_LAUNCH)
