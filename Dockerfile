# One image, `billing-worker`, for every process (migrate, web, worker, beat): the command picks
# the role. Built once by docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# The image's own interpreter (not a PEP 668 system Python): uv, pinned as in scripts/bootstrap.
RUN pip install --no-cache-dir "uv==0.13.9"
# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --frozen --no-dev --no-install-project
COPY billing billing
COPY models models
COPY worker worker
COPY stripe_emulator stripe_emulator
RUN uv sync --frozen --no-dev
ENV PATH="/app/.venv/bin:$PATH"
# An unprivileged user; the code stays root-owned and read-only to it. Its one writable folder,
# /var/lib/billing, holds beat's schedule (a volume in docker-compose.yml).
RUN useradd --system --uid 10001 --home-dir /var/lib/billing --create-home billing
USER billing
EXPOSE 8000
CMD ["billing", "--help"]
