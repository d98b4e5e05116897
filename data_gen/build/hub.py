"""Publishing a build to the Hugging Face Hub (`swelego data build --push-to-hub`)."""

from __future__ import annotations

from pathlib import Path

from data_gen.build.engine import first_line
from swelego.errors import SwelegoError

PUBLISHED = ("README.md", "card.json", "config.yaml", "plots/*", "tasks/tasks.jsonl", "trajectories/trajectories.jsonl",
             "trajectories/kept/*.jsonl", "trajectories/kept/report.json", "sft/*")


def check_hub_access(repo: str) -> str:
    """The Hub user that will push to `repo`; a one-line SwelegoError when that cannot work."""
    from huggingface_hub import HfApi, get_token

    if not repo or repo.count("/") > 1:
        raise SwelegoError(f"--push-to-hub {repo!r}: expected NAME or OWNER/NAME")
    if not get_token():
        raise SwelegoError(f"--push-to-hub {repo}: no Hugging Face token; set HF_TOKEN or run `hf auth login`")
    try:
        who = HfApi().whoami()
    except Exception as e:  # noqa: BLE001 - bad token, no network: one line either way
        raise SwelegoError(f"--push-to-hub {repo}: could not check the token with the Hugging Face Hub "
                           f"({first_line(e)[:200]})") from None
    owner = repo.split("/")[0] if "/" in repo else who.get("name", "")
    allowed = {who.get("name")} | {o.get("name") for o in who.get("orgs", []) if isinstance(o, dict)}
    if owner not in allowed:
        raise SwelegoError(f"--push-to-hub {repo}: user {who.get('name')} cannot write to {owner!r} "
                           f"(member of: {', '.join(sorted(n for n in allowed if n))})")
    return who.get("name", "")


def push_to_hub(out: Path, repo: str, private: bool = False) -> str:
    """Upload the card, the task and trajectory JSONL and the SFT files as a dataset repository;
    the card's `configs` front matter makes `datasets.load_dataset(repo, CONFIG)` read them."""
    from huggingface_hub import HfApi

    user = check_hub_access(repo)
    repo_id = repo if "/" in repo else f"{user}/{repo}"
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="dataset", allow_patterns=list(PUBLISHED),
                          commit_message="swelego data build")
    except Exception as e:  # noqa: BLE001
        raise SwelegoError(f"--push-to-hub {repo_id}: upload failed ({first_line(e)})") from None
    return f"https://huggingface.co/datasets/{repo_id}"
