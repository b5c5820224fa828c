# One image for both halves of the stack: `broker serve` (the default command) and
# `worker-agent` (docker-compose.yml's worker service runs it from this same image).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The package with its runtime dependencies only: the `test` extra (pytest, ruff, mypy) stays
# out of the image. Their versions are the ones the suite passed with (constraints.txt). The
# source is built from a scratch copy and removed, so nothing of it shadows the installed
# package.
COPY pyproject.toml README.md constraints.txt /src/
COPY broker /src/broker
COPY worker_agent /src/worker_agent
RUN pip install -c /src/constraints.txt /src && rm -rf /src

# A non-root user owns the data directory (a fresh named volume mounted there takes this
# ownership) and the working directory; functions run by the agent run as this user too.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin broker \
 && install -d -o broker -g broker -m 0750 /var/lib/broker
USER broker
WORKDIR /home/broker
ENV BROKER_DATA_DIR=/var/lib/broker

EXPOSE 8000

# For the broker: the process answers. docker-compose.yml checks /readyz instead (Redis answers
# and the data directory is writable) and disables this check for the worker, which serves no
# HTTP.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BROKER_PORT', '8000'), timeout=4)"]

CMD ["broker", "serve", "--host", "0.0.0.0"]
