"""No query in the package is built by formatting values into SQL text: every
call that sends SQL gets a constant, a `.sql` file's text or a psycopg
`sql.Composable` (identifiers and literals escaped by psycopg), never an
f-string, a `%`- or `+`-built string, or `str.format`."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dashboard_assets"
SQL_CALLS = {"execute", "copy", "fetch_one", "executemany"}


def _formatted(node: ast.expr) -> bool:
    """A string built from values at run time."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return any(isinstance(side, (ast.Constant, ast.JoinedStr)) and not isinstance(getattr(side, "value", None), bytes)
                   for side in (node.left, node.right)) and not _is_composable(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return isinstance(node.func.value, (ast.Constant, ast.JoinedStr))
    return False


def _is_composable(node: ast.BinOp) -> bool:
    """`sql.SQL(...) + ...`: composition of psycopg objects, escaped by psycopg."""
    return any(isinstance(side, ast.Call) and isinstance(side.func, ast.Attribute) and side.func.attr == "SQL"
               for side in (node.left, node.right))


def formatted_sql_calls(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
                and getattr(node.func, "attr", getattr(node.func, "id", None)) in SQL_CALLS and node.args):
            query = node.args[1] if getattr(node.func, "id", None) == "fetch_one" and len(node.args) > 1 else node.args[0]
            if _formatted(query):
                found.append(f"{filename}:{node.lineno}")
    return found


def test_no_query_is_built_by_formatting_values():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in formatted_sql_calls(path.read_text(), path.name)]
    assert found == []


def test_the_scan_finds_formatted_queries():
    bad = '''
def f(conn, org, table):
    conn.execute(f"SELECT * FROM orders WHERE organization_id = '{org}'")
    conn.execute("SELECT * FROM %s" % table)
    conn.execute("DELETE FROM x WHERE id = " + org)
    conn.execute("SELECT {}".format(org))
    conn.execute("SELECT 1 WHERE id = %s", (org,))
'''
    assert formatted_sql_calls(bad, "bad.py") == ["bad.py:3", "bad.py:4", "bad.py:5", "bad.py:6"]
