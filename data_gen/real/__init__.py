"""Real tasks: fixes mined from GitHub pull requests or a repository's git history, turned into
validated swebench rows in environments inferred (and, if needed, LLM-repaired) per repository.

Public API (plain arguments; the CLI in `data_gen.real.cli` is a shell over them):
`data_gen.real.mine_prs.mine_prs`, `data_gen.real.mine_git.mine_git` and
`data_gen.real.validate.validate`. Mining never loads the Docker and swebench stacks."""
