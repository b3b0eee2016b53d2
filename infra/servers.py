"""Production mode on one machine: Prefect server and MLflow tracking server, both on PostgreSQL, on 127.0.0.1.

    python -m infra.servers start   # creates the databases if needed, starts both, waits for their health checks
    python -m infra.servers status
    python -m infra.servers stop

Settings come from the environment (see infra/.env.example); secrets such as the database password belong there,
never in code. State (pids, logs, MLflow artifacts) goes to $ANOMALY_DISTILL_STATE (default infra/.state).

Both servers require a login; neither starts without its secrets:
- MLflow runs its basic-auth app (users and permissions in PostgreSQL database $MLFLOW_DB_auth). The admin user
  `$MLFLOW_AUTH_ADMIN_USERNAME` (default admin) is created on the first start with $MLFLOW_AUTH_ADMIN_PASSWORD;
  $MLFLOW_FLASK_SERVER_SECRET_KEY signs its forms. Clients set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
- Prefect checks every API call against $PREFECT_SERVER_API_AUTH_STRING ("user:password"); clients set
  PREFECT_API_AUTH_STRING to the same, and the UI asks for it on its login page.
Only the health checks answer without credentials.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class MissingSecrets(ValueError):
    """A server asked to start without the credentials it must require."""


@dataclass
class Settings:
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    prefect_db: str = "anomaly_distill_prefect"
    mlflow_db: str = "anomaly_distill_mlflow"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    state: Path = Path(__file__).parent / ".state"
    mlflow_admin: str = "admin"
    mlflow_admin_password: str = ""
    mlflow_secret_key: str = ""
    prefect_auth: str = ""  # "user:password"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        values = dict(
            pg_host=env.get("PGHOST", "127.0.0.1"),
            pg_port=int(env.get("PGPORT", 5432)),
            pg_user=env.get("PGUSER", "postgres"),
            pg_password=env.get("PGPASSWORD", ""),
            prefect_db=env.get("PREFECT_DB", "anomaly_distill_prefect"),
            mlflow_db=env.get("MLFLOW_DB", "anomaly_distill_mlflow"),
            prefect_port=int(env.get("PREFECT_PORT", 4200)),
            mlflow_port=int(env.get("MLFLOW_PORT", 5000)),
            state=Path(env.get("ANOMALY_DISTILL_STATE", Path(__file__).parent / ".state")),
            mlflow_admin=env.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin"),
            mlflow_admin_password=env.get("MLFLOW_AUTH_ADMIN_PASSWORD", ""),
            mlflow_secret_key=env.get("MLFLOW_FLASK_SERVER_SECRET_KEY", ""),
            prefect_auth=env.get("PREFECT_SERVER_API_AUTH_STRING", ""),
        )
        return cls(**{**values, **overrides})

    @classmethod
    def with_new_secrets(cls, **overrides) -> "Settings":
        """Random credentials (tests, benchmarks): servers that are started for one run and dropped after."""
        return cls.from_env(
            mlflow_admin_password=secrets.token_urlsafe(18),
            mlflow_secret_key=secrets.token_urlsafe(32),
            prefect_auth=f"admin:{secrets.token_urlsafe(18)}",
            **overrides,
        )

    def client_env(self) -> dict[str, str]:
        """What a client (CLI, flow, worker, scoring service) needs in its environment to reach both servers."""
        return {
            "PREFECT_API_URL": self.prefect_api,
            "PREFECT_API_AUTH_STRING": self.prefect_auth,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_TRACKING_USERNAME": self.mlflow_admin,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_admin_password,
        }

    def require_secrets(self) -> None:
        missing = [
            name
            for name, value in (
                ("MLFLOW_AUTH_ADMIN_PASSWORD", self.mlflow_admin_password),
                ("MLFLOW_FLASK_SERVER_SECRET_KEY", self.mlflow_secret_key),
                ("PREFECT_SERVER_API_AUTH_STRING", self.prefect_auth),
            )
            if not value
        ]
        if missing:
            raise MissingSecrets(f"set {', '.join(missing)} (see infra/.env.example): the servers never run open")
        if ":" not in self.prefect_auth:
            raise MissingSecrets('PREFECT_SERVER_API_AUTH_STRING must be "user:password"')

    @property
    def mlflow_auth_db(self) -> str:
        return f"{self.mlflow_db}_auth"

    @property
    def databases(self) -> tuple[str, str, str]:
        return self.prefect_db, self.mlflow_db, self.mlflow_auth_db

    def pg_url(self, database: str, driver: str = "postgresql") -> str:
        auth = self.pg_user + (f":{self.pg_password}" if self.pg_password else "")
        return f"{driver}://{auth}@{self.pg_host}:{self.pg_port}/{database}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def health_url(self, server: str) -> str:
        """Where `server` ("prefect" | "mlflow") answers its health probe (no login needed)."""
        return f"{self.prefect_api if server == 'prefect' else self.mlflow_uri}/health"


def _psql(settings: Settings, sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": settings.pg_password}
    return subprocess.run(
        [
            "psql",
            "-h",
            settings.pg_host,
            "-p",
            str(settings.pg_port),
            "-U",
            settings.pg_user,
            "-d",
            "postgres",
            "-tAc",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout


def create_database(settings: Settings, name: str) -> None:
    if not _psql(settings, f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
        _psql(settings, f'CREATE DATABASE "{name}"')


def drop_database(settings: Settings, name: str) -> None:
    _psql(settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _spawn(settings: Settings, name: str, command: list[str], env: dict) -> subprocess.Popen:
    settings.state.mkdir(parents=True, exist_ok=True)
    log = open(settings.state / f"{name}.log", "ab")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
    )  # own process group: stop() ends its workers too
    (settings.state / f"{name}.pid").write_text(str(process.pid))
    return process


def wait_healthy(url: str, timeout: float = 120, process: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered; see its log")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"no healthy answer from {url} within {timeout:.0f} s")


def start(settings: Settings, *servers: str) -> None:
    """Starts the named servers ("prefect", "mlflow") side by side, then waits until each answers: each spends most
    of its start-up importing, on its own core."""
    launched = {server: LAUNCH[server](settings) for server in servers}
    for server, process in launched.items():
        wait_healthy(settings.health_url(server), process=process)


def launch_prefect(settings: Settings) -> subprocess.Popen:
    settings.require_secrets()
    create_database(settings, settings.prefect_db)
    return _spawn(
        settings,
        "prefect",
        [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(settings.prefect_port)],
        {
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": settings.pg_url(settings.prefect_db, "postgresql+asyncpg"),
            "PREFECT_UI_API_URL": settings.prefect_api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_AUTH_STRING": settings.prefect_auth,
        },
    )


def launch_mlflow(settings: Settings) -> subprocess.Popen:
    settings.require_secrets()
    create_database(settings, settings.mlflow_db)
    create_database(settings, settings.mlflow_auth_db)
    artifacts = settings.state / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    return _spawn(
        settings,
        "mlflow",
        [
            _bin("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(settings.mlflow_port),
            "--backend-store-uri",
            settings.pg_url(settings.mlflow_db),
            "--artifacts-destination",
            str(artifacts),
            "--workers",
            "2",
            "--app-name",
            "basic-auth",
        ],
        {
            "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(settings)),
            "MLFLOW_AUTH_ADMIN_PASSWORD": settings.mlflow_admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": settings.mlflow_secret_key,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": mlflow_job_execution(),
        },
    )


def mlflow_job_execution(environ=os.environ) -> str:
    """Off unless the environment turns it on: MLflow's server job runner (three huey consumer processes, ~290 MB
    each) serves its GenAI features, which this pipeline does not use, and polls even when idle: an idle server
    took 27.6 s of CPU per minute with it and 0.2 s without (BENCHMARKS.md, "How long `make test` takes")."""
    return environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


LAUNCH = {"prefect": launch_prefect, "mlflow": launch_mlflow}


def write_auth_config(settings: Settings) -> Path:
    """MLflow's auth settings: users in PostgreSQL; others may read what they are not granted more on. No secret
    in the file: the admin password reaches the server through its environment."""
    path = settings.state / "mlflow-auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {settings.pg_url(settings.mlflow_auth_db)}\n"
        f"admin_username = {settings.mlflow_admin}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A checked password is trusted for 60 s: without it every API call re-derives a PBKDF2 hash (the server
        # test suite ran ~2x slower). A changed password takes up to 60 s to reach every worker.
        "auth_cache_ttl_seconds = 60\n"
    )
    return path


def kill(settings: Settings, name: str) -> None:
    """SIGKILL, not a clean stop: the server vanishes mid-request (outage tests and the soak)."""
    pid_file = settings.state / f"{name}.pid"
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    pid_file.unlink()


def stop(settings: Settings, name: str) -> None:
    pid_file = settings.state / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            _reap(pid)
            os.killpg(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink()


def _reap(pid: int) -> None:
    """Collects a server this process started and that has exited: an unreaped (zombie) group leader still counts
    for `killpg(pid, 0)`, so `stop` would wait its full 10 s for a server that stopped at once."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # started by another process: init reaps it
        pass


def main(argv: list[str]) -> int:
    settings = Settings.from_env()
    command = argv[0] if argv else "status"
    if command == "start":
        try:
            settings.require_secrets()
        except MissingSecrets as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        start(settings, "prefect", "mlflow")
        print(f"Prefect UI/API: http://127.0.0.1:{settings.prefect_port} (log in with PREFECT_SERVER_API_AUTH_STRING)")
        print(f"MLflow UI:      {settings.mlflow_uri} (user {settings.mlflow_admin}, MLFLOW_AUTH_ADMIN_PASSWORD)")
        print("Clients need:")
        print(f"  export PREFECT_API_URL={settings.prefect_api}")
        print("  export PREFECT_API_AUTH_STRING=$PREFECT_SERVER_API_AUTH_STRING")
        print(f"  export MLFLOW_TRACKING_URI={settings.mlflow_uri} MLFLOW_TRACKING_USERNAME={settings.mlflow_admin}")
        print("  export MLFLOW_TRACKING_PASSWORD=$MLFLOW_AUTH_ADMIN_PASSWORD")
    elif command == "stop":
        stop(settings, "prefect")
        stop(settings, "mlflow")
    elif command == "status":
        for name, url in ((server, settings.health_url(server)) for server in LAUNCH):
            try:
                wait_healthy(url, timeout=3)
                print(f"{name}: healthy at {url}")
            except TimeoutError:
                print(f"{name}: not answering at {url}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
