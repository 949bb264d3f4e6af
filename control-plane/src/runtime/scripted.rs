//! A runtime for fast tests of the dispatcher: it starts no process. Each one-shot
//! instance it "starts" is announced to the test ([`ScriptedRuntime::next_start`]) with
//! its launch variables, and lives until the test ends it ([`Started::exit`]) or the
//! dispatcher kills it. The test plays the watchdog: it reports through
//! `Dispatcher::complete` with the instance's callback token. Warm instances are not
//! scripted (their calls are HTTP exchanges the pool's own tests cover).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gantry_protocol::env;
use tokio::sync::{mpsc, watch};

use super::{Instance, InstanceExit, Launch, Runtime, RuntimeError, WarmLaunch, WarmStarted};
use crate::registry::FunctionSpec;

/// One instance the dispatcher started.
#[derive(Debug)]
pub struct Started {
    /// Its launch variables.
    pub env: Vec<(String, String)>,
    exit: watch::Sender<Option<InstanceExit>>,
    killed: Arc<AtomicUsize>,
}

impl Started {
    /// The value of launch variable `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The execution it runs and its callback token.
    pub fn execution(&self) -> (uuid::Uuid, String) {
        let id = self
            .var(env::EXECUTION_ID)
            .and_then(|id| id.parse().ok())
            .expect("EXECUTION_ID");
        let token = self.var(env::CALLBACK_TOKEN).expect("CALLBACK_TOKEN");
        (id, token.to_owned())
    }

    /// Ends the instance with exit code `code`.
    pub fn exit(&self, code: i32) {
        let _ = self.exit.send(Some(InstanceExit {
            code: Some(code),
            signal: None,
            last_stdout_line: None,
        }));
    }

    /// How often the dispatcher killed it.
    pub fn kills(&self) -> usize {
        self.killed.load(Ordering::SeqCst)
    }
}

/// The scripted runtime; clone the `Arc` to keep a handle in the test.
pub struct ScriptedRuntime {
    starts: mpsc::UnboundedSender<Started>,
    announced: tokio::sync::Mutex<mpsc::UnboundedReceiver<Started>>,
    /// When set, every start fails with this message.
    failing: Mutex<Option<String>>,
    count: AtomicUsize,
}

impl ScriptedRuntime {
    /// A runtime whose starts all succeed.
    pub fn new() -> Arc<ScriptedRuntime> {
        let (starts, announced) = mpsc::unbounded_channel();
        Arc::new(ScriptedRuntime {
            starts,
            announced: tokio::sync::Mutex::new(announced),
            failing: Mutex::new(None),
            count: AtomicUsize::new(0),
        })
    }

    /// The next instance the dispatcher starts (waits for it).
    pub async fn next_start(&self) -> Started {
        self.announced
            .lock()
            .await
            .recv()
            .await
            .expect("the runtime lives")
    }

    /// Makes every later start fail with `message`.
    pub fn fail_starts(&self, message: &str) {
        *self.failing.lock().expect("lock") = Some(message.to_owned());
    }

    /// Instances started so far.
    pub fn started(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

struct ScriptedInstance {
    id: String,
    exit: watch::Receiver<Option<InstanceExit>>,
    ender: watch::Sender<Option<InstanceExit>>,
    killed: Arc<AtomicUsize>,
}

#[async_trait]
impl Instance for ScriptedInstance {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wait(&mut self) -> InstanceExit {
        loop {
            if let Some(exit) = self.exit.borrow_and_update().clone() {
                return exit;
            }
            if self.exit.changed().await.is_err() {
                return InstanceExit {
                    code: None,
                    signal: Some(9),
                    last_stdout_line: None,
                };
            }
        }
    }

    async fn kill(&mut self, _grace: Duration) {
        self.killed.fetch_add(1, Ordering::SeqCst);
        let _ = self.ender.send(Some(InstanceExit {
            code: None,
            signal: Some(9),
            last_stdout_line: None,
        }));
    }
}

#[async_trait]
impl Runtime for ScriptedRuntime {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn problems(&self, _function: &FunctionSpec) -> Vec<String> {
        Vec::new()
    }

    fn ignored(&self, _function: &FunctionSpec) -> Vec<String> {
        Vec::new()
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Instance>, RuntimeError> {
        if let Some(message) = self.failing.lock().expect("lock").clone() {
            return Err(RuntimeError::Spawn(message));
        }
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        let (ender, exit) = watch::channel(None);
        let killed = Arc::new(AtomicUsize::new(0));
        let _ = self.starts.send(Started {
            env: launch.env,
            exit: ender.clone(),
            killed: killed.clone(),
        });
        Ok(Box::new(ScriptedInstance {
            id: format!("scripted-{n}"),
            exit,
            ender,
            killed,
        }))
    }

    async fn start_warm(&self, _launch: WarmLaunch) -> Result<WarmStarted, RuntimeError> {
        Err(RuntimeError::Unsupported(
            "the scripted runtime runs no warm instances".into(),
        ))
    }

    async fn remove_orphans(&self) -> usize {
        0
    }
}
