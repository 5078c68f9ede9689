"""`itemflow jobs retry|summary|run`: a dataset's jobs in bulk, through
the HTTP API, as the user whose key is given (ITEMFLOW_API_KEY)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.models import JobStatus

if TYPE_CHECKING:
    import httpx


def add_jobs_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = commands.add_parser(
        "jobs", help="retry a dataset's failed jobs, or sum them up (through the API)"
    ).add_subparsers(dest="jobs_command", required=True)
    retry = jobs.add_parser("retry", help="retry the dataset's failed jobs a filter picks")
    summary = jobs.add_parser("summary", help="the dataset's jobs by status, and common errors")
    run = jobs.add_parser("run", help="run a post-processor over the items already there")
    for command in (retry, summary, run):
        add_api_options(command)
        command.add_argument("--dataset", required=True, help="the dataset's id")
    run.add_argument("--post-processor", required=True, help="the post-processor's id")
    run.add_argument("--version", help="only this version's items (its id)")
    run.add_argument("--split", help="only this split's items (its id)")
    run.add_argument(
        "--without-completed",
        action="store_true",
        help="only items without a completed job of this post-processor",
    )
    retry.add_argument("--post-processor", help="only this post-processor's jobs (its id)")
    retry.add_argument("--model-type", help="only jobs of post-processors of this model type")
    retry.add_argument("--error-contains", help="only jobs whose error has this text (any case)")
    retry.add_argument("--created-before", type=_aware, help="ISO 8601 time with a zone")
    retry.add_argument("--created-after", type=_aware, help="ISO 8601 time with a zone")
    retry.add_argument(
        "--max-attempts", type=int, help="raise the jobs' cap of attempts to N (else skipped)"
    )


def add_api_options(command: argparse.ArgumentParser) -> None:
    port = os.environ.get("API_PORT", "8000")
    command.add_argument(
        "--url",
        default=os.environ.get("ITEMFLOW_URL", f"http://127.0.0.1:{port}"),
        help="the API's address (ITEMFLOW_URL; default http://127.0.0.1:API_PORT)",
    )
    command.add_argument(
        "--api-key",
        default=os.environ.get("ITEMFLOW_API_KEY", ""),
        help="a user's API key (ITEMFLOW_API_KEY)",
    )


def api_client(args: argparse.Namespace) -> httpx.Client:
    # Imported here: the commands that run the system need no HTTP client.
    import httpx

    return httpx.Client(
        base_url=args.url.rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {args.api_key}"},
        # A bulk retry of many jobs sends their messages before it answers.
        timeout=httpx.Timeout(10, read=600),
    )


def _aware(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a zone, e.g. {text}Z or {text}+02:00")
    return moment.isoformat()


def has_api_key(args: argparse.Namespace, command: str) -> bool:
    if not args.api_key:
        print(f"{command}: give --api-key or set ITEMFLOW_API_KEY", file=sys.stderr)
    return bool(args.api_key)


def unreachable(args: argparse.Namespace, command: str, error: Exception) -> None:
    print(f"{command}: cannot reach the API at {args.url}: {error}", file=sys.stderr)


def run_jobs_command(args: argparse.Namespace) -> int:
    if not has_api_key(args, "itemflow jobs"):
        return 2
    import httpx

    path = f"/datasets/{args.dataset}/post-processors/jobs"
    try:
        with api_client(args) as client:
            if args.jobs_command == "run":
                return run_post_processor(client, args)
            if args.jobs_command == "retry":
                answer = client.post(path + "/retry", json=_retry_filter(args))
            else:
                answer = client.get(path + "/summary")
    except httpx.ReadTimeout:
        print(
            f"itemflow jobs {args.jobs_command}: no answer within 10 minutes; the API may "
            "still have done it: see `itemflow jobs summary`",
            file=sys.stderr,
        )
        return 1
    except httpx.HTTPError as error:
        unreachable(args, "itemflow jobs", error)
        return 1
    if answer.is_error:
        print(f"itemflow jobs {args.jobs_command}: {problem_line(answer)}", file=sys.stderr)
        return 1
    if args.jobs_command == "retry":
        retried = answer.json()
        print(f"retried {retried['retried']}, skipped {retried['skipped']}")
        if retried["skipped"]:
            print(
                "skipped jobs have used all their attempts: --max-attempts N raises the cap",
                file=sys.stderr,
            )
        if retried["busy"]:
            print(
                f"{retried['busy']} failed jobs left failed: another job of their "
                "post-processor is pending or running for the item",
                file=sys.stderr,
            )
    else:
        print_summary(answer.json())
    return 0


# Items a request looks at: a page of the progress bar.
RUN_PAGE = 1000


def run_post_processor(client: httpx.Client, args: argparse.Namespace) -> int:
    """The run page by page, each page's jobs made and sent before the next
    is asked for, so the bar shows how far it is; stopped, run it again and
    it skips the items whose job is pending or running."""
    from tqdm import tqdm

    path = f"/datasets/{args.dataset}/post-processors/{args.post_processor}/run"
    chosen = {
        "version_id": args.version,
        "split_id": args.split,
        "items": "without_completed" if args.without_completed else "all",
        "limit": RUN_PAGE,
    }
    body = {name: value for name, value in chosen.items() if value is not None}
    created = skipped = 0
    bar = None  # made with the first page, which tells how many items there are
    try:
        while True:
            answer = client.post(path, json=body)
            if answer.is_error:
                print(f"itemflow jobs run: {problem_line(answer)}", file=sys.stderr)
                return 1
            page = answer.json()
            created += page["created"]
            skipped += page["skipped"]
            looked_at = page["created"] + page["skipped"]
            if bar is None:
                bar = tqdm(total=looked_at + page["remaining"], unit="item", file=sys.stderr)
            bar.update(looked_at)
            if not page["next"]:
                break
            body["after"] = page["next"]
    finally:
        if bar is not None:
            bar.close()
    print(f"created {created}, skipped {skipped}")
    if skipped:
        print(
            "skipped items have a job of this post-processor pending or running",
            file=sys.stderr,
        )
    return 0


def _retry_filter(args: argparse.Namespace) -> dict[str, Any]:
    chosen = {
        "status": JobStatus.FAILED.value,
        "post_processor_id": args.post_processor,
        "model_type": args.model_type,
        "error_contains": args.error_contains,
        "created_before": args.created_before,
        "created_after": args.created_after,
        "max_attempts": args.max_attempts,
    }
    return {name: value for name, value in chosen.items() if value is not None}


def problem_line(answer: httpx.Response) -> str:
    """A problem+json answer in a line: its detail, and each field error."""
    try:
        body = answer.json()
    except ValueError:
        return f"{answer.status_code} {answer.text[:200]}"
    errors = [
        f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
        for error in body.get("errors", [])
    ]
    return "; ".join([f"{answer.status_code} {body.get('detail') or body.get('title')}", *errors])


def print_summary(summary: dict[str, Any]) -> None:
    statuses = [status.value for status in JobStatus] + ["total"]
    print(f"{'POST-PROCESSOR':<24} {'MODEL TYPE':<16}" + "".join(f"{s:>11}" for s in statuses))
    names = {}
    for row in summary["post_processors"]:
        names[row["post_processor_id"]] = row["name"]
        counts = "".join(f"{row['counts'][s]:>11}" for s in statuses)
        print(f"{row['name'][:24]:<24} {row['model_type']:<16}{counts}")
    if summary["errors"]:
        print("\nmost common errors of failed jobs:")
        for error in summary["errors"]:
            name = names.get(error["post_processor_id"], error["post_processor_id"])
            print(f"{error['count']:>7}  {name[:24]:<24} {error['error']}")
