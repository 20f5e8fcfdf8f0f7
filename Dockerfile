# Balances: a slim two-stage image. The service needs DATABASE_URL here: without it,
# `balances serve` would start an embedded PostgreSQL inside the container instead.

FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, exactly as locked (every file checked against its hash), in a layer that
# a change to the code does not invalidate.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
# Non-editable: the venv must not point back at /src, which the runtime stage does not have.
# --no-deps: everything it needs is installed above, from the lock.
RUN pip install --no-cache-dir --no-deps .

FROM python:3.12-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# /srv stays root-owned: the app writes only to its data directory, where the first start
# leaves the bootstrap admin key (mode 0600) unless BALANCES_BOOTSTRAP_ADMIN_KEY is set.
RUN groupadd --system --gid 10001 balances \
 && useradd --system --uid 10001 --gid balances --no-create-home --home-dir /srv \
      --shell /usr/sbin/nologin balances \
 && install -d -o balances -g balances -m 0700 /var/lib/balances
ENV BALANCES_DATA_DIR=/var/lib/balances
VOLUME ["/var/lib/balances"]
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
USER balances
EXPOSE 8000
# slim has no curl: probe with the interpreter that is there anyway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# serve runs the migrations (under an advisory lock) before it starts; SIGTERM drains requests.
CMD ["balances", "serve", "--host", "0.0.0.0", "--port", "8000"]
