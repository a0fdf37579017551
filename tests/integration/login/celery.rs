//! A Celery worker whose broker and result-backend URLs carry no password completes tasks
//! through the sidecar; the gateway logs in to Redis (an ACL user with `&*`, which Celery's
//! pub/sub needs) and to PostgreSQL (SCRAM only) for it.

use std::fs;
use std::process::{Command, Stdio};

use super::*;
use crate::support::clients::tools::{run_python, topology_python};
use crate::support::process::ChildGuard;

const APP: &str = "import os\n\
from celery import Celery\n\
app = Celery('logintest', broker=os.environ['BROKER'], backend=os.environ['BACKEND'])\n\
app.conf.update(broker_connection_retry_on_startup=True, result_backend_always_retry=True,\n\
                task_serializer='json', result_serializer='json', accept_content=['json'])\n\
@app.task\n\
def add(x, y):\n\
\x20   return x + y\n";

#[test]
fn a_celery_worker_without_passwords_completes_tasks() {
    let (pg, redis) = (postgres("scram-sha-256"), redis_with_users());
    let c = Chain::start(Some(&pg), Some(&redis));
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("logintest.py"), APP).unwrap();
    let broker = format!("redis://localhost:{}/0", c.sc.port("redis"));
    let backend = format!("db+postgresql://localhost:{}/celery", c.sc.port("postgres"));
    let path = dir.path().display().to_string();
    let env = [
        ("BROKER", broker),
        ("BACKEND", backend),
        ("PYTHONPATH", path),
    ];
    let mut worker = Command::new(topology_python());
    worker.args([
        "-m",
        "celery",
        "-A",
        "logintest",
        "worker",
        "--pool=solo",
        "-l",
        "WARNING",
    ]);
    worker.args([
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]);
    worker
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k, v)));
    let log = fs::File::create(dir.path().join("worker.log")).unwrap();
    worker.stdout(Stdio::null()).stderr(log);
    let _worker = ChildGuard::new(worker.spawn().unwrap(), libc::SIGTERM);
    let producer = "from logintest import add\n\
                    results = [add.delay(i, i) for i in range(20)]\n\
                    print(sum(r.get(timeout=60) for r in results))\n";
    assert_eq!(run_python(&topology_python(), producer, &env), "380\n");
    let sql = "select count(*) from celery_taskmeta where status = 'SUCCESS'";
    assert_eq!(pg.psql_in(USER, sql), "20");
}
