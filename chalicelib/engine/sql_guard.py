"""The SQL guard: what a SQL statement run for a user may not do inside the kernel, checked before it runs.

Defense in depth for SQL-only users (the kernel also runs as the user's own uid with no credentials):
no reflection into the JVM, no file reads or writes by path outside the allowed folders (``roots``),
no jars, files or archives added to the session, no settings that would undo this guard.

How it decides: the statement is parsed with the session's own parser (the very call ``spark.sql``
makes, variable substitution included) and the parsed logical plan is read as one JSON document
(``TreeNode.toJSON``: every node with its class name and fields, plans inside expressions, CTEs,
views, scripts, ``EXPLAIN`` included). Nodes are judged by their Spark class names, the way Kyuubi's
authz plugin names Spark's commands:

- ``UnresolvedFunction`` named ``reflect``, ``java_method`` or ``try_reflect`` (any case, quoted, or
  qualified ``system.builtin.``), also through ``IDENTIFIER('...')`` (``ExpressionWithUnresolvedIdentifier``);
- ``UnresolvedRelation`` ``<format>.`<path>``` (``text``, ``csv``, ``parquet``, ``json``, ``binaryFile``, a
  class name, or any name Spark resolves as a data source), refused even if ``runSQLOnFiles`` were on;
- ``UnresolvedTableValuedFunction`` ``read_files`` (not in Spark 4.3; checked against the roots should it come);
- ``InsertIntoDir`` (``INSERT OVERWRITE [LOCAL] DIRECTORY``), ``AddJarsCommand``/``AddFilesCommand``/
  ``AddArchivesCommand`` and their ``List*`` commands, ``LoadData`` (``LOAD DATA``),
  ``SetTableSerDeProperties``, ``CreateFunction``/``CreateFunctionCommand`` (JVM classes, ``USING JAR``);
- every ``location`` (``CREATE TABLE|DATABASE ... LOCATION``, ``ALTER TABLE|DATABASE ... SET LOCATION``,
  ``ADD PARTITION ... LOCATION``, ``CREATE TABLE LIKE``) and every path-like option (``OPTIONS (path ..)``,
  ``paths``, ``basePath``, ...) must lie inside ``roots``; ``USING`` names a file format (``FILE_SOURCES``);
- ``SetCommand`` of a guarded key, ``ResetCommand`` that would undo ``GUARD_CONFS``;
- ``UnresolvedExecuteImmediate`` and SQL functions (``CreateSQLFunctionCommand``,
  ``CreateUserDefinedFunction``): their SQL text is checked the same way; a computed
  ``EXECUTE IMMEDIATE`` or ``IDENTIFIER(...)`` (``PlanWithUnresolvedIdentifier``) is refused.

A statement that does not parse is let through: ``spark.sql`` fails on it with Spark's own error.
The guard also hardens the session the first time it sees it (:func:`harden_session`): the
reflection functions are dropped from the session's function registry (so no spelling reaches
them) and :data:`GUARD_CONFS` are set where the session builder did not set them (:func:`harden`).

Cost: one parse and one ``toJSON`` through py4j, about 0.5 ms for ``select 1`` when warm.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import SparkSession

from chalicelib.engine.plan_json import simple as _simple
from chalicelib.engine.plan_json import tree as _build

__all__ = [
    "FILE_SOURCES",
    "GUARD_CONFS",
    "SqlRefused",
    "check_file_source",
    "guard",
    "guarded",
    "harden",
    "harden_session",
    "roots_from_env",
    "unsafe_user_confs",
]

#: Spark confs every kernel session gets (the builder's, through :func:`harden`; the guard also sets
#: the runtime ones on a session that lacks them). Every key is a Spark 4.3 SQL conf.
GUARD_CONFS: dict[str, str] = {
    # ``select * from csv.`/path``` reads any file; off, such a name is just a missing table.
    "spark.sql.runSQLOnFiles": "false",
    # ``${env:NAME}`` and ``${system:prop}`` in SQL text read the environment and JVM properties.
    "spark.sql.variable.substitute": "false",
    # Static: ``reflect``/``java_method`` may call only methods matching one of these patterns; this one
    # matches none (an empty list would allow all).
    "spark.sql.reflect.allowList": "(?!)",
    # A schema string (e.g. in a Parquet footer) would name any class to load and instantiate.
    "spark.sql.udt.allowCreatingUDTFromString": "false",
    "spark.sql.udt.allowedDynamicUDTClasses": ",".join(
        f"org.apache.spark.{pkg}.linalg.{cls}UDT" for pkg in ("ml", "mllib") for cls in ("Vector", "Matrix")
    ),
    # Escape hatches: ``location``/``provider`` as plain table or database properties; SET of core confs;
    # CTAS over a folder that already holds data.
    "spark.sql.legacy.notReserveProperties": "false",
    "spark.sql.legacy.setCommandRejectsSparkCoreConfs": "true",
    "spark.sql.legacy.allowNonEmptyLocationInCTAS": "false",
}

#: Data sources a table, a temp view or a loaded file may use: files, read from inside the roots.
FILE_SOURCES = frozenset({"csv", "json", "parquet", "orc", "text", "avro", "xml", "binaryfile"})
REFLECTION_FUNCTIONS = frozenset({"reflect", "java_method", "try_reflect"})
#: Table-valued functions that read files by path (none in Spark 4.3; checked should one come).
FILE_TVFS = frozenset({"read_files"})
_KNOWN_SOURCES = FILE_SOURCES | {
    *("jdbc", "hive", "libsvm", "image", "noop", "console", "memory", "rate", "socket", "kafka"),
    *("delta", "iceberg", "hudi", "orc", "python"),
}
#: Option keys that name files or URLs (compared in lower case); ``pathGlobFilter`` is a pattern, not a path.
_PATH_OPTIONS = frozenset({"path", "paths", "basepath", "location", "url", "checkpointlocation"})
_PATH_OPTION_SUFFIXES = ("path", "url", "uri", "dir", "location", "file")
#: Keys whose value is a class (or list of classes) to load: never settable by a user.
_CLASS_KEY_SUFFIXES = ("class", "classes", "provider", "providers", "listeners", "extensions", "plugins", "impl")
#: Builder settings that put code into the JVM or run programs; the platform never sets them.
_CODE_KEYS = frozenset(
    {
        *("spark.files", "spark.archives", "spark.submit.pyfiles", "spark.plugins", "spark.plugins.defaultlist"),
        *("spark.extralisteners", "spark.sql.extensions", "spark.sql.queryexecutionlisteners"),
        *("spark.sql.streaming.streamingquerylisteners", "spark.sql.extendedexplainproviders"),
        *("spark.driver.extraclasspath", "spark.driver.extralibrarypath", "spark.driver.defaultjavaoptions"),
        *("spark.executor.extraclasspath", "spark.executor.extralibrarypath", "spark.executor.extrajavaoptions"),
        *("spark.executor.defaultjavaoptions", "spark.pyspark.python", "spark.pyspark.driver.python"),
        *("spark.python.daemon.module", "spark.python.worker.module"),
    }
)
_CODE_PREFIXES = ("spark.jars", "spark.sql.catalog.", "spark.sql.hive.metastore.", "spark.yarn.dist.")
#: What the kernel's builder sets itself (heap quota, JVM flags, private folders, loopback).
_PLATFORM_KEYS = frozenset(
    {
        *("spark.driver.memory", "spark.driver.extrajavaoptions", "spark.local.dir", "spark.sql.warehouse.dir"),
        *("spark.driver.host", "spark.driver.bindaddress", "spark.master", "spark.submit.deploymode"),
    }
)
_GLOB_CHARS = frozenset("*?[]{}\\")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_OBJECT_STORES = {"s3": "s3", "s3a": "s3", "s3n": "s3"}
_WORD_DEFAULT = re.compile(r"\bdefault\b", re.IGNORECASE)
_MAX_DEPTH = 8


class SqlRefused(ValueError):
    """A statement the guard does not let run; the message names what was refused."""


# ---- settings ---------------------------------------------------------------------------------------


def _code_key(key: str) -> bool:
    low = key.lower()
    return low in _CODE_KEYS or low.startswith(_CODE_PREFIXES) or low.endswith(_CLASS_KEY_SUFFIXES)


def harden(builder_configs: Mapping[str, Any]) -> dict[str, Any]:
    """The session builder's settings with :data:`GUARD_CONFS` forced over them and every setting that
    would load code into the JVM or run a program dropped (``spark.jars*``, extra class paths, executor
    JVM options, plugins, listeners, SQL extensions, catalog plugins, class-valued confs, the Python
    executables). The platform's own keys (driver memory and JVM options, folders) are kept."""
    hardened = {str(key): value for key, value in builder_configs.items() if not _code_key(str(key))}
    hardened.update(GUARD_CONFS)
    return hardened


def unsafe_user_confs(configs: Mapping[str, Any]) -> list[str]:
    """The keys of a user's session ``configs`` a user may not choose: what :func:`harden` drops or
    forces, the platform's own settings (heap, JVM options, folders, addresses) and ``spark.hadoop.*``."""
    refused = []
    for key in configs:
        low = str(key).lower()
        if (
            _code_key(low)
            or low in _PLATFORM_KEYS
            or low in _GUARD_KEYS
            or low.startswith(("spark.hadoop.", "spark.executorenv."))
        ):
            refused.append(str(key))
    return sorted(refused)


_GUARD_KEYS = frozenset(key.lower() for key in GUARD_CONFS)


def _set_refusal(key: str) -> str | None:
    """Why ``SET key=value`` is refused (None when it is allowed)."""
    low = key.strip().lower()
    if low in _GUARD_KEYS:
        return "it is one of the SQL guard's settings"
    if not low.startswith("spark."):
        return "only spark.* settings may be changed (others reach the Hadoop configuration)"
    if low.startswith("spark.hadoop."):
        return "Hadoop settings may not be changed"
    if _code_key(low):
        return "it names classes to load"
    return None


# ---- roots ------------------------------------------------------------------------------------------


def _split_roots(raw: str) -> list[str]:
    """``a:/b:s3a://bucket/x`` -> ``[a, /b, s3a://bucket/x]`` (a ``scheme://`` keeps its colon)."""
    pieces = raw.split(":")
    roots: list[str] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        if i + 1 < len(pieces) and pieces[i + 1].startswith("//") and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", piece):
            piece = f"{piece}:{pieces[i + 1]}"
            i += 1
        if piece:
            roots.append(piece)
        i += 1
    return roots


def roots_from_env() -> tuple[str, ...]:
    """The folders the kernel's SQL may name: ``SPARKGATE_KERNEL_ROOTS`` (colon-separated; set but empty
    means none), else the shared data roots (``settings().data_roots``) and nothing else. Local roots
    are made absolute (relative ones against the working folder); ``s3a://bucket/prefix/`` roots are kept."""
    raw = os.environ.get("SPARKGATE_KERNEL_ROOTS")
    if raw is None:
        from chalicelib.config import settings

        parts = list(settings().data_roots)
    else:
        parts = _split_roots(raw)
    return tuple(p if _SCHEME.match(p) and "://" in p else os.path.abspath(p) for p in parts)


class _Roots:
    """``roots`` resolved once, when a path first needs checking: local real paths and object-store prefixes."""

    def __init__(self, roots: Sequence[str]) -> None:
        self.given = tuple(roots)
        self._local: tuple[str, ...] | None = None
        self._stores: tuple[str, ...] = ()

    def _resolve(self) -> tuple[str, ...]:
        if self._local is None:
            local, stores = [], []
            for root in self.given:
                store = _store_uri(root)
                if store is not None:
                    stores.append(store if store.endswith("/") else store + "/")
                elif not _SCHEME.match(root):
                    local.append(os.path.realpath(root))
            self._local, self._stores = tuple(local), tuple(stores)
        return self._local

    @property
    def stores(self) -> tuple[str, ...]:
        self._resolve()
        return self._stores

    def refusal(self, path: str, what: str) -> SqlRefused:
        shown = ", ".join(self.given) or "none"
        return SqlRefused(f"refused: {what} '{path}' is not inside the allowed folders ({shown})")

    def check(self, raw: str, what: str, *, any_object_store: bool = False) -> None:
        """Raise :class:`SqlRefused` unless ``raw`` (a local path or ``file:`` / object-store URI) lies
        inside a root. ``any_object_store``: an ``s3a://`` path passes when no object-store root is given."""
        text = raw.strip()
        if not text or "\x00" in text or any(ord(c) < 0x20 for c in text):
            raise self.refusal(raw, what)
        scheme = _SCHEME.match(text)
        if scheme and scheme.group(1).lower() != "file":
            store = _store_uri(text)
            if store is None or any(c in text for c in "{}\\"):
                raise SqlRefused(f"refused: {what} '{raw}' (only local paths and s3a:// objects may be named)")
            if self.stores:
                if not any(store == root.rstrip("/") or store.startswith(root) for root in self.stores):
                    raise self.refusal(raw, what)
            elif not (any_object_store and scheme.group(1).lower() == "s3a"):
                raise self.refusal(raw, what)
            return
        local = _local_path(text)
        if local is None or any(c in _GLOB_CHARS for c in local) or ".." in local.split("/"):
            raise self.refusal(raw, what)
        real = os.path.realpath(os.path.abspath(local))
        if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in self._resolve()):
            raise self.refusal(raw, what)


def _store_uri(text: str) -> str | None:
    """``s3a://bucket/key`` -> ``s3://bucket/key`` (s3, s3a, s3n alike); None for anything else or a
    key with ``.``/``..`` segments or empty segments."""
    scheme = _SCHEME.match(text)
    if not scheme or scheme.group(1).lower() not in _OBJECT_STORES or not text[scheme.end() :].startswith("//"):
        return None
    rest = text[scheme.end() + 2 :]
    bucket, _, key = rest.partition("/")
    segments = key.split("/")
    if not bucket or any(s in (".", "..") for s in segments) or "" in segments[:-1]:
        return None
    return f"{_OBJECT_STORES[scheme.group(1).lower()]}://{rest}"


def _local_path(text: str) -> str | None:
    """The local path of ``/x``, ``x``, ``file:/x``, ``file:///x`` or ``file://localhost/x`` (None: another host)."""
    if not text.lower().startswith("file:"):
        return text
    rest = text[5:]
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        return "/" + path if host in ("", "localhost") and slash else None
    return rest if rest.startswith("/") else None


def _path_values(key: str, value: str) -> list[str]:
    """The paths an option holds: ``paths`` is a JSON list (Spark's own encoding), others one path."""
    if key.lower() != "paths":
        return [value]
    try:
        parsed = json.loads(value)
    except ValueError:
        return [value]
    if isinstance(parsed, list):
        return [str(p) for p in parsed]
    return [str(parsed)]


def _is_path_option(key: str) -> bool:
    low = key.lower()
    return low in _PATH_OPTIONS or low.endswith(_PATH_OPTION_SUFFIXES)


def check_file_source(fmt: str, path: str, options: Mapping[str, Any], roots: Sequence[str]) -> None:
    """A file read the platform makes for a user (geo ``load_table``): ``fmt`` must be a file format,
    ``path`` and every path-like option inside ``roots``; of other schemes only ``s3a://`` passes
    (under an object-store root when one is given)."""
    checker = _Roots(roots)
    if fmt.lower() not in FILE_SOURCES:
        raise _source_refusal(fmt)
    checker.check(path, "path", any_object_store=True)
    for key, value in options.items():
        if _is_path_option(str(key)):
            for one in _path_values(str(key), str(value)):
                checker.check(one, f"option {key}", any_object_store=True)


def _source_refusal(provider: str) -> SqlRefused:
    allowed = ", ".join(sorted(FILE_SOURCES))
    return SqlRefused(f"refused: data source '{provider}' is not allowed (file formats only: {allowed})")


# ---- sessions ---------------------------------------------------------------------------------------


class _Session:
    """What the guard keeps per SparkSession (no reference to the session itself)."""

    def __init__(self, spark: SparkSession) -> None:
        jss = spark._jsparkSession
        self.jvm = spark._jvm
        self.jss = jss
        self.parser = jss.sessionState().sqlParser()
        conf = spark.sparkContext.getConf()
        #: The builder carries every guard conf: RESET (back to the builder's values) cannot undo them.
        self.builder_guarded = all(conf.get(key) == value for key, value in GUARD_CONFS.items())
        self.sources: dict[str, bool] = {}
        self.lock = threading.Lock()

    def is_data_source(self, name: str) -> bool:
        """Whether Spark resolves ``name`` as a data source (short name or class), cached."""
        low = name.lower()
        if low in _KNOWN_SOURCES or "." in name:
            return True
        with self.lock:
            known = self.sources.get(low)
        if known is None:
            try:
                datasource = self.jvm.org.apache.spark.sql.execution.datasources.DataSource
                datasource.lookupDataSource(name, self.jss.sessionState().conf())
                known = True
            except (CapturedException, Py4JJavaError):
                known = False
            with self.lock:
                self.sources[low] = known
        return known

    def default_source(self) -> str:
        return str(self.jss.sessionState().conf().defaultDataSourceName())


_sessions: weakref.WeakKeyDictionary[SparkSession, _Session] = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def harden_session(spark: SparkSession) -> None:
    """Drop ``reflect``/``java_method``/``try_reflect`` from the session's function registry and set the
    runtime :data:`GUARD_CONFS` the session does not have yet. Idempotent; :func:`guard` calls it once
    per session (a new ``spark.newSession()`` starts from Spark's built-in registry again)."""
    jvm = spark._jvm
    registry = spark._jsparkSession.sessionState().functionRegistry()
    some = jvm.scala.Some
    for name in sorted(REFLECTION_FUNCTIONS):
        registry.dropFunction(
            jvm.org.apache.spark.sql.catalyst.FunctionIdentifier(name, some("builtin"), some("system"))
        )
    for key, value in GUARD_CONFS.items():
        if spark.conf.isModifiable(key) and spark.conf.get(key) != value:
            spark.conf.set(key, value)


def _session(spark: SparkSession) -> _Session:
    with _sessions_lock:
        state = _sessions.get(spark)
    if state is None:
        harden_session(spark)
        state = _Session(spark)
        with _sessions_lock:
            state = _sessions.setdefault(spark, state)
    return state


# ---- the check --------------------------------------------------------------------------------------

_scope = threading.local()


def guard(spark: SparkSession, statement: str, roots: Sequence[str]) -> None:
    """Raise :class:`SqlRefused` when ``statement`` may not run (see the module docstring).

    Free inside a :func:`guarded` block for the same statement (a statement is checked once).
    """
    if getattr(_scope, "key", None) == (id(spark), statement, tuple(roots)):
        return
    _Check(_session(spark), _Roots(roots)).statement(statement, 0)


@contextlib.contextmanager
def guarded(spark: SparkSession, statement: str, roots: Sequence[str] | None = None) -> Iterator[None]:
    """``guard(statement)`` (``roots`` default :func:`roots_from_env`), then a block in which the same
    statement is not checked again (``spark.sql`` of it, or of text the platform derived from it)."""
    roots = roots_from_env() if roots is None else tuple(roots)
    guard(spark, statement, roots)
    previous = getattr(_scope, "key", None)
    _scope.key = (id(spark), statement, tuple(roots))
    try:
        yield
    finally:
        _scope.key = previous


def _is_tree(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "num-children" in value[0]


def _nodes(document: Any) -> Iterator[dict[str, Any]]:
    """Every tree node anywhere in a ``toJSON`` document: children, and trees held in fields
    (expressions, subquery plans, CTE definitions, a view's query, a script's statements)."""
    pending: list[Any] = [document]
    while pending:
        value = pending.pop()
        if _is_tree(value):
            stack = [_build(value)]
            while stack:
                node = stack.pop()
                yield node
                stack.extend(node["_children"])
                pending.extend(v for k, v in node.items() if k not in ("class", "num-children", "_children"))
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())


def _name_parts(shown: Any) -> list[str]:
    """``"[system, builtin, java_method]"`` (a Seq[String] as toJSON writes it) -> its parts."""
    text = str(shown or "")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text.split(", ")


def _identifier_parts(text: str) -> list[str]:
    """``a.`b.c`.d`` -> ``[a, b.c, d]`` (backticks quote, doubled backticks escape)."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "`":
            if quoted and text.startswith("``", i):
                current.append("`")
                i += 2
                continue
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current).strip())
    return parts


def _literal(tree: Any) -> str | None:
    """The string of a tree that is one string ``Literal`` (None for anything computed)."""
    if isinstance(tree, list) and len(tree) == 1:
        tree = tree[0]
    if isinstance(tree, dict) and _simple(tree) == "Literal" and tree.get("dataType") == "string":
        value = tree.get("value")
        return value if isinstance(value, str) else None
    return None


def _reflection(parts: list[str]) -> SqlRefused | None:
    name = parts[-1].strip().lower() if parts else ""
    if name in REFLECTION_FUNCTIONS:
        return SqlRefused(f"refused: {name} (reflection) is not allowed")
    return None


_COMMANDS = {
    "InsertIntoDir": "INSERT OVERWRITE [LOCAL] DIRECTORY",
    "InsertIntoDataSourceDirCommand": "INSERT OVERWRITE [LOCAL] DIRECTORY",
    "InsertIntoHiveDirCommand": "INSERT OVERWRITE [LOCAL] DIRECTORY",
    "AddJarsCommand": "ADD JAR",
    "AddFilesCommand": "ADD FILE",
    "AddArchivesCommand": "ADD ARCHIVE",
    "ListJarsCommand": "LIST JAR",
    "ListFilesCommand": "LIST FILE",
    "ListArchivesCommand": "LIST ARCHIVE",
    "LoadData": "LOAD DATA",
    "LoadDataCommand": "LOAD DATA",
    "SetTableSerDeProperties": "ALTER TABLE ... SET SERDEPROPERTIES",
    "AlterTableSerDePropertiesCommand": "ALTER TABLE ... SET SERDEPROPERTIES",
}
#: Commands whose deciding fields toJSON drops (maps, options): read from the JVM plan, at the root only.
_ROOT_ONLY = {
    "SetCommand": "SET",
    "CreateTempViewUsing": "CREATE TEMPORARY VIEW ... USING",
    "CreateNamespace": "CREATE DATABASE",
}


class _Check:
    def __init__(self, session: _Session, roots: _Roots) -> None:
        self.s = session
        self.roots = roots

    def statement(self, text: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise SqlRefused("refused: statements nested too deeply")
        try:
            plan = self.s.parser.parsePlan(text)
        except (CapturedException, Py4JJavaError):
            return  # spark.sql makes the same call and reports the error itself
        self.plan(plan, depth)

    def plan(self, jplan: Any, depth: int) -> None:
        try:
            document = json.loads(jplan.toJSON())
            root = document[0] if isinstance(document, list) and document else None
            for node in _nodes(document):
                self.node(node, node is root, jplan, depth)
        except SqlRefused:
            raise
        except (CapturedException, Py4JJavaError, ValueError, KeyError, TypeError) as err:
            raise SqlRefused(f"refused: the statement could not be checked ({type(err).__name__})") from None

    def expression(self, text: str, depth: int) -> None:
        try:
            expr = self.s.parser.parseExpression(text)
        except (CapturedException, Py4JJavaError):
            raise SqlRefused("refused: a SQL function body that does not parse") from None
        self.plan(expr, depth)

    def node(self, node: dict[str, Any], is_root: bool, jplan: Any, depth: int) -> None:
        name = _simple(node)
        location = node.get("location")
        if isinstance(location, str):
            self.roots.check(location, "location")
        if name in _COMMANDS:
            raise SqlRefused(f"refused: {_COMMANDS[name]} is not allowed")
        if name in _ROOT_ONLY and not is_root:
            raise SqlRefused(f"refused: {_ROOT_ONLY[name]} inside another statement or a script is not allowed")
        handler = getattr(self, f"_{name}", None)
        if handler is not None:
            handler(node, jplan, depth)

    # -- expressions and relations

    def _UnresolvedFunction(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        refused = _reflection(_name_parts(node.get("nameParts")))
        if refused:
            raise refused

    def _UnresolvedGenerator(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        ident = node.get("name")
        if isinstance(ident, dict) and (refused := _reflection([str(ident.get("funcName", ""))])):
            raise refused

    def _ExpressionWithUnresolvedIdentifier(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        index = node.get("identifierExpr")
        child = node["_children"][index] if isinstance(index, int) else None
        text = _literal(child)
        if text is None:
            raise SqlRefused("refused: IDENTIFIER() with a computed name is not allowed (a string literal is)")
        refused = _reflection(_identifier_parts(text))
        if refused:
            raise refused

    def _PlanWithUnresolvedIdentifier(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        raise SqlRefused("refused: IDENTIFIER() with a computed name is not allowed (a string literal is)")

    def _UnresolvedRelation(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        parts = _name_parts(node.get("multipartIdentifier"))
        if len(parts) >= 2 and (self.s.is_data_source(parts[0]) or "/" in parts[-1] or ":" in parts[-1]):
            raise SqlRefused(f"refused: reading files by path ({parts[0]}.`{', '.join(parts[1:])}`) is not allowed")

    def _UnresolvedTableValuedFunction(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        name = _name_parts(node.get("name"))[-1].lower()
        if name in FILE_TVFS:
            args = node.get("functionArgs") or []
            path = _literal(args[0]) if args else None
            if path is None:
                raise SqlRefused(f"refused: {name}() of a computed path is not allowed")
            self.roots.check(path, f"{name}()")

    def _UnresolvedExecuteImmediate(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        text = _literal(node.get("sqlStmtStr"))
        if text is None:
            raise SqlRefused("refused: EXECUTE IMMEDIATE of a computed statement is not allowed (a string literal is)")
        self.statement(text, depth + 1)

    # -- tables, views, functions

    def _UnresolvedTableSpec(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        provider = node.get("provider")
        if not isinstance(provider, str):
            provider = "hive" if "serde" in node else self.s.default_source()
        if provider.lower() not in FILE_SOURCES:
            raise _source_refusal(provider)

    def _CreateTableLike(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        provider = node.get("provider")
        if isinstance(provider, str) and provider.lower() not in FILE_SOURCES:
            raise _source_refusal(provider)

    def _OptionList(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        for option in node.get("options") or []:
            key = str(option.get("_1", "")) if isinstance(option, dict) else ""
            if not _is_path_option(key):
                continue
            value = _literal(option.get("_2"))
            if value is None:
                raise SqlRefused(f"refused: option {key} must be a string literal")
            for path in _path_values(key, value):
                self.roots.check(path, f"option {key}")

    def _CreateTempViewUsing(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        provider = str(node.get("provider") or "")
        if provider.lower() not in FILE_SOURCES:
            raise _source_refusal(provider)
        converters = self.s.jvm.scala.jdk.javaapi.CollectionConverters
        for key, value in dict(converters.asJava(jplan.options())).items():
            if _is_path_option(str(key)):
                for path in _path_values(str(key), str(value)):
                    self.roots.check(path, f"option {key}")

    def _CreateNamespace(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        location = jplan.properties().get("location")
        if location.isDefined():
            self.roots.check(str(location.get()), "location")

    def _CreateFunction(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        if node.get("resources"):
            raise SqlRefused("refused: CREATE FUNCTION ... USING JAR|FILE|ARCHIVE is not allowed")
        raise SqlRefused(
            "refused: CREATE FUNCTION ... AS '<class>' (a JVM class) is not allowed; SQL functions (RETURN ...) are"
        )

    _CreateFunctionCommand = _CreateFunction

    def _CreateSQLFunctionCommand(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        language = node.get("language")
        if isinstance(language, dict) and not str(language.get("object", "")).endswith("LanguageSQL$"):
            raise SqlRefused("refused: functions in languages other than SQL are not allowed")
        if isinstance(node.get("exprText"), str):
            self.expression(node["exprText"], depth + 1)
        if isinstance(node.get("queryText"), str):
            self.statement(node["queryText"], depth + 1)
        params = node.get("inputParamText")
        if isinstance(params, str) and _WORD_DEFAULT.search(params):
            # Parameter defaults are expressions: read them as the columns of a table definition.
            try:
                surrogate = self.s.parser.parsePlan(f"CREATE TABLE __sparkgate_params ({params}) USING parquet")
            except (CapturedException, Py4JJavaError):
                raise SqlRefused("refused: SQL function parameters that cannot be checked") from None
            self.plan(surrogate, depth + 1)

    _CreateUserDefinedFunction = _CreateSQLFunctionCommand

    # -- settings

    def _SetCommand(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        kv = jplan.kv()
        if not kv.isDefined():
            return  # SET, SET -v: list
        pair = kv.get()
        if not pair._2().isDefined():
            return  # SET key: read
        key = str(pair._1())
        reason = _set_refusal(key)
        if reason:
            raise SqlRefused(f"refused: SET {key} is not allowed ({reason})")

    def _ResetCommand(self, node: dict[str, Any], jplan: Any, depth: int) -> None:
        if self.s.builder_guarded:
            return  # RESET goes back to the builder's values, which carry the guard's settings
        key = node.get("config")
        if not isinstance(key, str):
            raise SqlRefused("refused: RESET of every setting is not allowed (it would undo the SQL guard's settings)")
        if key.strip().lower() in _GUARD_KEYS:
            raise SqlRefused(f"refused: RESET {key} is not allowed (it would undo the SQL guard's settings)")
