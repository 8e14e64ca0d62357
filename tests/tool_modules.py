"""Import a script under ``tools/`` as a module, so tests can call its
functions and its ``main(argv)`` in-process."""
import importlib.util
import os.path as osp

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))


def load_tool(relative_path: str):
    """``tools/<relative_path>`` as a fresh module object."""
    path = osp.join(REPO, 'tools', relative_path)
    name = 'mmspd_tool_' + osp.splitext(relative_path)[0].replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
