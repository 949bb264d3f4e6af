//! Admission control: per function, how many executions run and which wait, with the
//! limits `max_in_flight` and `max_queue`. Only ids live here; records are in the store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

/// What a new execution may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A slot is reserved: start it now.
    Run,
    /// A queue place is reserved: store it, then [`Admission::queue_reserved`].
    Queue,
}

/// The function is at `max_in_flight` with a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    /// Executions waiting.
    pub queued: usize,
}

#[derive(Default)]
struct Slots {
    running: usize,
    max_in_flight: usize,
    queue: VecDeque<Uuid>,
    /// The ids in `queue`, so one found again (recovery, work another node left) is
    /// not queued twice.
    queued: HashSet<Uuid>,
    reserved: usize,
    /// Nothing starts while set: the function is at its cluster-wide limit.
    held_back: bool,
}

impl Slots {
    fn load(&self) -> Load {
        Load {
            queued: self.queue.len() + self.reserved,
            running: self.running,
        }
    }

    /// Moves queued ids into free slots; answers the ids to start.
    fn fill(&mut self) -> Vec<Uuid> {
        let mut start = Vec::new();
        if self.held_back {
            return start;
        }
        while self.running < self.max_in_flight {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&id);
            self.running += 1;
            start.push(id);
        }
        start
    }
}

/// Load of one function: queued and running executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Waiting (reserved places included).
    pub queued: usize,
    /// Running.
    pub running: usize,
}

/// Slots and queues of every function.
#[derive(Default)]
pub struct Admission {
    functions: Mutex<HashMap<String, Slots>>,
}

impl Admission {
    fn with<T>(&self, function: &str, f: impl FnOnce(&mut Slots) -> T) -> (T, Load) {
        let mut functions = self.functions.lock().expect("admission lock poisoned");
        let slots = functions.entry(function.to_owned()).or_default();
        let result = f(slots);
        (result, slots.load())
    }

    /// Reserves a slot or a queue place for a new execution of `function`, of whose
    /// executions `waiting_elsewhere` wait on other nodes (they count against
    /// `max_queue` too).
    pub fn try_admit(
        &self,
        function: &str,
        max_in_flight: u32,
        max_queue: u32,
        waiting_elsewhere: usize,
    ) -> (Result<Admit, QueueFull>, Load) {
        self.with(function, |slots| {
            slots.max_in_flight = max_in_flight as usize;
            let waiting_here = slots.queue.len() + slots.reserved;
            let waiting = waiting_here + waiting_elsewhere;
            if slots.running < slots.max_in_flight && waiting_here == 0 && !slots.held_back {
                slots.running += 1;
                Ok(Admit::Run)
            } else if waiting < max_queue as usize {
                slots.reserved += 1;
                Ok(Admit::Queue)
            } else {
                Err(QueueFull { queued: waiting })
            }
        })
    }

    /// Gives back a reservation whose execution was never stored.
    pub fn release(&self, function: &str, admit: Admit) -> (Vec<Uuid>, Load) {
        self.with(function, |slots| {
            match admit {
                Admit::Run => slots.running = slots.running.saturating_sub(1),
                Admit::Queue => slots.reserved = slots.reserved.saturating_sub(1),
            }
            slots.fill()
        })
    }

    /// Turns a queue reservation into a queued id (now stored); answers the ids that
    /// can start right away.
    pub fn queue_reserved(&self, function: &str, id: Uuid) -> (Vec<Uuid>, Load) {
        self.with(function, |slots| {
            slots.reserved = slots.reserved.saturating_sub(1);
            if slots.queued.insert(id) {
                slots.queue.push_back(id);
            }
            slots.fill()
        })
    }

    /// Queues an execution found in the store (at start-up, due work, work another node
    /// left): no limit applies, and one already queued here is not queued twice.
    pub fn queue_recovered(
        &self,
        function: &str,
        id: Uuid,
        max_in_flight: u32,
    ) -> (Vec<Uuid>, Load) {
        self.with(function, |slots| {
            slots.max_in_flight = max_in_flight as usize;
            if slots.queued.insert(id) {
                slots.queue.push_back(id);
            }
            slots.fill()
        })
    }

    /// The claim of `id` was refused because the function is at its cluster-wide limit:
    /// `id` goes back to the head of the queue, and nothing more of the function starts
    /// here until [`Admission::resume`]. (Its slot is freed by [`Admission::finished`].)
    pub fn hold_back(&self, function: &str, id: Uuid) -> Load {
        self.with(function, |slots| {
            slots.held_back = true;
            if slots.queued.insert(id) {
                slots.queue.push_front(id);
            }
        })
        .1
    }

    /// Lets the function start its queued executions again; answers the ids to start.
    pub fn resume(&self, function: &str) -> (Vec<Uuid>, Load) {
        self.with(function, |slots| {
            slots.held_back = false;
            slots.fill()
        })
    }

    /// A running execution ended: frees its slot and answers the ids to start.
    pub fn finished(&self, function: &str) -> (Vec<Uuid>, Load) {
        self.with(function, |slots| {
            slots.running = slots.running.saturating_sub(1);
            slots.fill()
        })
    }

    /// Takes a queued id out of the queue (cancel). `false` if it was not queued.
    pub fn remove_queued(&self, function: &str, id: Uuid) -> (bool, Load) {
        self.with(function, |slots| {
            if !slots.queued.remove(&id) {
                return false;
            }
            slots.queue.retain(|queued| *queued != id);
            true
        })
    }

    /// Queued and running executions of `function`.
    pub fn load(&self, function: &str) -> Load {
        self.with(function, |_| ()).1
    }

    /// The load of every function with executions queued or running.
    pub fn loads(&self) -> Vec<(String, Load)> {
        let functions = self.functions.lock().expect("admission lock poisoned");
        functions
            .iter()
            .map(|(name, slots)| (name.clone(), slots.load()))
            .filter(|(_, load)| *load != Load::default())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_waiting_on_other_nodes_count_against_the_queue_only() {
        let admission = Admission::default();
        assert_eq!(
            admission.try_admit("f", 1, 3, 5).0,
            Ok(Admit::Run),
            "a free slot here"
        );
        assert_eq!(admission.try_admit("f", 1, 3, 2).0, Ok(Admit::Queue));
        assert_eq!(
            admission.try_admit("f", 1, 3, 2).0,
            Err(QueueFull { queued: 3 }),
            "one waits here and two elsewhere"
        );
        assert_eq!(
            admission.loads(),
            vec![(
                "f".to_owned(),
                Load {
                    queued: 1,
                    running: 1
                }
            )]
        );
    }

    #[test]
    fn a_held_back_function_starts_nothing_until_resumed() {
        let admission = Admission::default();
        assert_eq!(admission.try_admit("f", 2, 10, 0).0, Ok(Admit::Run));
        let refused = Uuid::now_v7();
        admission.hold_back("f", refused);
        let (start, load) = admission.finished("f");
        assert!(start.is_empty(), "held back");
        assert_eq!((load.queued, load.running), (1, 0));
        assert_eq!(
            admission.try_admit("f", 2, 10, 0).0,
            Ok(Admit::Queue),
            "new ones wait too"
        );
        let later = Uuid::now_v7();
        admission.queue_reserved("f", later);
        let (start, _) = admission.resume("f");
        assert_eq!(start, vec![refused, later], "the refused one first");
    }

    #[test]
    fn an_id_found_again_is_queued_once() {
        let admission = Admission::default();
        assert_eq!(admission.try_admit("f", 1, 10, 0).0, Ok(Admit::Run));
        let id = Uuid::now_v7();
        for _ in 0..3 {
            let (start, load) = admission.queue_recovered("f", id, 1);
            assert!(start.is_empty());
            assert_eq!(load.queued, 1);
        }
        let (start, load) = admission.finished("f");
        assert_eq!((start, load.queued), (vec![id], 0));
        // Once started it may be found (and queued) again: the claim decides.
        let (start, _) = admission.queue_recovered("f", id, 1);
        assert!(start.is_empty());
        assert!(admission.remove_queued("f", id).0);
        assert!(!admission.remove_queued("f", id).0);
    }

    #[test]
    fn runs_up_to_the_limit_then_queues_then_refuses() {
        let admission = Admission::default();
        assert_eq!(admission.try_admit("f", 2, 1, 0).0, Ok(Admit::Run));
        assert_eq!(admission.try_admit("f", 2, 1, 0).0, Ok(Admit::Run));
        assert_eq!(admission.try_admit("f", 2, 1, 0).0, Ok(Admit::Queue));
        assert_eq!(
            admission.try_admit("f", 2, 1, 0).0,
            Err(QueueFull { queued: 1 })
        );
        let id = Uuid::now_v7();
        let (start, load) = admission.queue_reserved("f", id);
        assert!(start.is_empty());
        assert_eq!(
            load,
            Load {
                queued: 1,
                running: 2
            }
        );
        let (start, load) = admission.finished("f");
        assert_eq!(start, vec![id]);
        assert_eq!(
            load,
            Load {
                queued: 0,
                running: 2
            }
        );
    }

    #[test]
    fn a_reservation_stored_after_a_slot_freed_starts_at_once() {
        let admission = Admission::default();
        assert_eq!(admission.try_admit("f", 1, 5, 0).0, Ok(Admit::Run));
        assert_eq!(admission.try_admit("f", 1, 5, 0).0, Ok(Admit::Queue));
        let (start, _) = admission.finished("f");
        assert!(start.is_empty());
        let id = Uuid::now_v7();
        let (start, load) = admission.queue_reserved("f", id);
        assert_eq!(start, vec![id]);
        assert_eq!(
            load,
            Load {
                queued: 0,
                running: 1
            }
        );
    }

    #[test]
    fn cancelled_ids_leave_the_queue_and_functions_are_independent() {
        let admission = Admission::default();
        assert_eq!(admission.try_admit("f", 1, 5, 0).0, Ok(Admit::Run));
        assert_eq!(admission.try_admit("f", 1, 5, 0).0, Ok(Admit::Queue));
        let id = Uuid::now_v7();
        admission.queue_reserved("f", id);
        assert!(admission.remove_queued("f", id).0);
        assert!(!admission.remove_queued("f", id).0);
        assert_eq!(admission.try_admit("g", 1, 0, 0).0, Ok(Admit::Run));
        assert_eq!(
            admission.try_admit("g", 1, 0, 0).0,
            Err(QueueFull { queued: 0 })
        );
        assert_eq!(admission.finished("f").0, Vec::<Uuid>::new());
        assert_eq!(admission.load("f"), Load::default());
    }
}
