"""``aesrm`` command line: score a pair, rank a folder of renders, explain a pair, serve.

Why both modes: product people want ``aesrm rank renders/`` to just work on a laptop (in-process on the
embedded default model, no server), and the same commands against a shared server with ``--server URL``.
Every command goes through the SDK (or, in-process, the same calls on an Engine: service.engine.local_client), so
what the CLI shows is exactly what API users get.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.client import AesRMError, AsyncAesRMClient

app = typer.Typer(help="AesRM: pairwise video preference (VA / VF / VP) scoring.", no_args_is_help=True,
                  add_completion=False)
console = Console()
VIDEO_EXTS = {".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".gif", ".npy"}
DIMS = ("VA", "VF", "VP")


class Ctx:
    server: str | None = None
    api_key: str | None = None


# --server / --api-key are accepted before the command (`aesrm --server URL score ...`) and after it
# (`aesrm score a b --server URL`); a value given after the command wins. The environment is read once, by
# the group callback, so AESRM_SERVER never overrides a flag given before the command.
_SERVER_HELP = "URL of a running server; default: score in-process (embedded model)."
GlobalServer = Annotated[str | None, typer.Option("--server", "-s", envvar="AESRM_SERVER", help=_SERVER_HELP)]
GlobalApiKey = Annotated[str | None, typer.Option("--api-key", envvar="AESRM_API_KEY", help="Bearer key.")]
Server = Annotated[str | None, typer.Option("--server", "-s", help=_SERVER_HELP + " [env: AESRM_SERVER]")]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="Bearer key. [env: AESRM_API_KEY]")]


def _connect(server: str | None, api_key: str | None) -> None:
    if server is not None:
        Ctx.server = server
    if api_key is not None:
        Ctx.api_key = api_key


@app.callback()
def main(server: GlobalServer = None, api_key: GlobalApiKey = None) -> None:
    """--server and --api-key go before or after the command. In-process settings come from AESRM_* env."""
    Ctx.server, Ctx.api_key = server, api_key


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[AsyncAesRMClient]:
    """The SDK client for --server, else the same calls answered by an Engine in this process (no HTTP)."""
    if Ctx.server:
        async with AsyncAesRMClient(Ctx.server, api_key=Ctx.api_key, timeout=300) as c:
            yield c
    else:
        from service.engine.local_client import local_client

        with console.status("loading the embedded model in-process..."):
            cm = local_client()
            c = await cm.__aenter__()
        try:
            yield c
        finally:
            await cm.__aexit__(None, None, None)


def _run(coro) -> None:
    """Run a command's coroutine; service errors become a red one-liner and exit code 1."""
    try:
        asyncio.run(coro)
    except AesRMError as exc:
        console.print(f"[bold red]error[/] {exc.code} ({exc.status or 'no response'}): {exc.message}")
        raise typer.Exit(1) from None


def _existing(p: Path) -> Path:
    if not p.is_file():
        raise typer.BadParameter(f"{p} is not a file")
    return p


def _pct(p: float) -> str:
    colour = "green" if p >= 0.6 else "red" if p <= 0.4 else "yellow"
    return f"[{colour}]{p:.3f}[/]"


@app.command()
def score(a: Path = typer.Argument(..., help="Video A (container file or .npy frames)."),
          b: Path = typer.Argument(..., help="Video B."),
          single_order: bool = typer.Option(False, "--single-order", help="Ask (A,B) only (faster)."),
          as_json: bool = typer.Option(False, "--json", help="Print the raw response as JSON."),
          server: Server = None, api_key: ApiKey = None) -> None:
    """P(A preferred over B) on VA, VF, VP and overall."""
    _connect(server, api_key)
    _existing(a), _existing(b)

    async def go():
        async with _client() as c:
            r = await c.pair(a, b, both_orders=False if single_order else None)
        if as_json:
            print(r.model_dump_json(indent=2))
            return
        t = Table(title=f"P({a.name} preferred over {b.name})")
        for col in ("dimension", "P(A>B)", "logit", "order disagreement"):
            t.add_column(col, justify="right" if col != "dimension" else "left")
        for d in (*DIMS, "overall"):
            dis = getattr(r.order_disagreement, d) if r.order_disagreement else None
            t.add_row(d, _pct(getattr(r.preference, d)), f"{getattr(r.logits, d):+.3f}",
                      "-" if dis is None else f"{dis:.3f}")
        console.print(t)
        winner = a.name if r.preference.overall >= 0.5 else b.name
        console.print(f"preferred overall: [bold]{winner}[/]   cache={r.cache}  "
                      f"{r.timings_ms.total_ms:.0f} ms  model={r.model.id} {r.model.version}"
                      + ("" if r.model.trained else "  [red](UNTRAINED weights)[/]"))

    _run(go())


def _collect(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    if len(files) < 2:
        raise typer.BadParameter(f"need at least 2 videos ({', '.join(sorted(VIDEO_EXTS))}) in {folder}")
    return files


@app.command()
def rank(folder: Path = typer.Argument(..., help="Folder of candidate renders."),
         aggregation: str = typer.Option("bradley_terry", "--aggregation", "-a",
                                         help="bradley_terry or win_rate."),
         csv_out: Path = typer.Option(None, "--csv", help="Write the ranking as CSV."),
         json_out: Path = typer.Option(None, "--json", help="Write the full group response as JSON."),
         server: Server = None, api_key: ApiKey = None) -> None:
    """Rank every video in FOLDER (all pairs, both orders) and show a table; broken files are listed last."""
    _connect(server, api_key)
    if aggregation not in ("bradley_terry", "win_rate"):
        raise typer.BadParameter("aggregation must be bradley_terry or win_rate")
    files = _collect(folder)

    async def go():
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console)
        with progress:
            reading = progress.add_task("reading renders", total=len(files))
            blobs = []
            for f in files:
                blobs.append(await asyncio.to_thread(f.read_bytes))
                progress.advance(reading)
            async with _client() as c:
                scoring = progress.add_task(f"scoring {len(files)} videos: {_pairs(len(files))} pairs",
                                            total=1)
                res = await c.group(blobs, ids=[f.name for f in files], aggregation=aggregation)
                progress.advance(scoring)
        rows = _ranked(res)
        _table(rows, res)
        if csv_out:
            with csv_out.open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["rank", "file", "reward", "VA", "VF", "VP", "overall", "error"])
                w.writerows([[r["rank"], r["file"], r["reward"], *(r[d] for d in (*DIMS, "overall")), r["error"]]
                             for r in rows])
            console.print(f"wrote {csv_out}")
        if json_out:
            json_out.write_text(json.dumps({"ranking": rows, "response": res.model_dump()}, indent=2))
            console.print(f"wrote {json_out}")

    _run(go())


def _ranked(res) -> list[dict]:
    """Valid items by reward (best first), then errored ones; ranks only for valid items."""
    ok = sorted((x for x in res.results if x.error is None), key=lambda x: -(x.reward or 0.0))
    bad = [x for x in res.results if x.error is not None]
    rows = []
    for n, x in enumerate(ok + bad):
        dims = x.dimensions.model_dump() if x.dimensions else {}
        rows.append({"rank": n + 1 if x.error is None else None, "file": x.id, "index": x.index,
                     "reward": x.reward, **{d: dims.get(d) for d in (*DIMS, "overall")},
                     "error": f"{x.error.code}: {x.error.message}" if x.error else None})
    return rows


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _summary(res) -> str:
    """Pairs in the same unit as the progress line: unordered pairs among the videos that decoded, and how
    many model answers that took (pairs_scored counts each order of a pair)."""
    valid = sum(1 for x in res.results if x.error is None)
    orders = 2 if res.both_orders else 1
    pairs = res.pairs_scored // orders
    text = f"{res.aggregation}: {pairs} pairs among {valid} valid videos"
    if valid < len(res.results):
        text += f" ({len(res.results) - valid} failed)"
    return text + (f", both orders = {res.pairs_scored} pair scores" if orders == 2 else "")


def _table(rows: list[dict], res) -> None:
    t = Table(title=f"ranking ({_summary(res)})")
    t.add_column("rank", justify="right")
    t.add_column("file")
    t.add_column("reward", justify="right")
    for d in DIMS:
        t.add_column(d, justify="right")
    errs = any(r["error"] for r in rows)
    if errs:
        t.add_column("error", style="red", max_width=60)
    for r in rows:
        if r["error"]:
            t.add_row("-", f"[red]{r['file']}[/]", "[red]error[/]", "", "", "", r["error"])
            continue
        t.add_row(str(r["rank"]), r["file"], f"{r['reward']:.3f}", *(f"{r[d]:.3f}" for d in DIMS),
                  *([""] if errs else []))
    console.print(t)
    if not res.model.trained:
        console.print("[red]model weights are UNTRAINED: scores are not meaningful[/]")


@app.command()
def explain(a: Path = typer.Argument(..., help="Video A."), b: Path = typer.Argument(..., help="Video B."),
            poll: bool = typer.Option(False, "--poll", help="Poll instead of following the event stream."),
            timeout: float = typer.Option(300.0, help="Give up after this many seconds."),
            server: Server = None, api_key: ApiKey = None) -> None:
    """Why is A (or B) preferred: per-dimension and per-criterion verdicts with reasoning."""
    _connect(server, api_key)
    _existing(a), _existing(b)

    async def go():
        async with _client() as c:
            job = await c.explain_submit(a, b)
            console.print(f"job {job.job_id} {job.status}" + (" (reused)" if job.reused else ""))
            if not poll:
                with contextlib.suppress(AesRMError):
                    async with asyncio.timeout(timeout):
                        async for event, data in c.explain_events(job.job_id):
                            if event == "status":
                                console.print(f"[dim]{data.get('status')}[/]")
                            elif event == "progress":
                                console.print(f"[dim]{data.get('stage', '')} {data.get('fraction', 0):.0%}[/]")
                            elif event == "end":
                                break
            info = await c.explain_status(job.job_id)
            async with asyncio.timeout(timeout):
                while info.status in ("queued", "running"):
                    await asyncio.sleep(0.3)
                    info = await c.explain_status(job.job_id)
        _print_explanation(info, a.name, b.name)

    _run(go())


def _print_explanation(info, name_a: str, name_b: str) -> None:
    if info.result is None:
        msg = f"{info.error.code}: {info.error.message}" if info.error else info.status
        console.print(f"[bold red]explanation {info.status}[/] {msg}")
        raise typer.Exit(1)
    r = info.result
    label = {"A": name_a, "B": name_b, "tie": "tie", "withheld": "withheld (out of distribution)"}
    t = Table(title=f"{name_a} (A) vs {name_b} (B) - source: {r.source}")
    for col in ("", "verdict", "confidence", "P(A>B)"):
        t.add_column(col)
    t.add_row("[bold]overall[/]", label[r.overall.verdict], f"{r.overall.confidence:.2f}", f"{r.overall.p_a:.3f}")
    for d, v in r.dimensions.items():
        t.add_row(f"[bold]{d}[/]", label[v.verdict], f"{v.confidence:.2f}", f"{v.p_a:.3f}")
    for cv in r.criteria:
        t.add_row(f"  {cv.dimension}/{cv.name}", label[cv.verdict], f"{cv.confidence:.2f}", f"{cv.p_a:.3f}")
    console.print(t)
    console.print(r.reasoning)
    console.print(f"[dim]{r.disclaimer}[/]")


@app.command()
def serve(host: str = typer.Option(None, help="Bind address (default AESRM_HOST)."),
          port: int = typer.Option(None, help="Port (default AESRM_PORT).")) -> None:
    """Run the HTTP gateway (same as aesrm-serve); the web page is at /."""
    import logging

    import uvicorn

    from service.api.app import create_app
    from service.config import get_settings

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_level="info", timeout_graceful_shutdown=10)


if __name__ == "__main__":
    app()
