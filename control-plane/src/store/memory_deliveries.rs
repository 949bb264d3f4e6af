//! The memory store's result deliveries, with the SQL stores' rules (see
//! `sqlite_deliveries_sql.rs`): times kept to the millisecond, claims by lease.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ms, State};
use crate::destinations::{Delivery, DeliveryClaim, DeliveryFilter, DeliveryState};
use crate::store::StoreError;

/// A delivery with the lease on it.
#[derive(Debug, Clone)]
pub(super) struct HeldDelivery {
    delivery: Delivery,
    owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
}

impl HeldDelivery {
    /// The execution whose result this delivers.
    pub(super) fn execution_id(&self) -> Uuid {
        self.delivery.execution_id
    }
}

/// A delivery as the SQL stores give it back.
fn stored(delivery: &Delivery) -> Delivery {
    let mut delivery = delivery.clone();
    delivery.next_at = delivery.next_at.map(ms);
    delivery
}

impl State {
    /// Fails as inserting `deliveries` would, changing nothing.
    pub(super) fn check_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        if deliveries
            .iter()
            .any(|delivery| self.deliveries.contains_key(&delivery.id))
        {
            return Err(StoreError::database(
                "store a delivery",
                crate::store::Fault::Conflict,
                "a delivery with this id is stored".to_owned(),
            ));
        }
        Ok(())
    }

    pub(super) fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        self.check_deliveries(deliveries)?;
        for delivery in deliveries {
            let held = HeldDelivery {
                delivery: stored(delivery),
                owner: None,
                lease_until: None,
            };
            self.deliveries.insert(delivery.id, held);
        }
        Ok(())
    }

    pub(super) fn arm_deliveries(
        &mut self,
        execution: Uuid,
        body: &str,
        now: DateTime<Utc>,
    ) -> usize {
        let mut armed = 0;
        for held in self.deliveries.values_mut() {
            let delivery = &mut held.delivery;
            if delivery.execution_id == execution && delivery.state == DeliveryState::Waiting {
                delivery.state = DeliveryState::Pending;
                delivery.body = Some(body.to_owned());
                delivery.next_at = Some(ms(now));
                armed += 1;
            }
        }
        armed
    }

    pub(super) fn drop_waiting_deliveries(&mut self, execution: Uuid) {
        self.deliveries.retain(|_, held| {
            held.delivery.execution_id != execution || held.delivery.state != DeliveryState::Waiting
        });
    }

    pub(super) fn claim_deliveries(&mut self, claim: &DeliveryClaim) -> Vec<Delivery> {
        let now = ms(claim.now);
        let mut due: Vec<(DateTime<Utc>, Uuid)> = self
            .deliveries
            .values()
            .filter(|held| {
                held.delivery.state == DeliveryState::Pending
                    && held.delivery.next_at.is_some_and(|at| at <= now)
                    && held.lease_until.is_none_or(|until| until < now)
            })
            .filter_map(|held| Some((held.delivery.next_at?, held.delivery.id)))
            .collect();
        due.sort();
        due.truncate(claim.limit as usize);
        due.into_iter()
            .filter_map(|(_, id)| {
                let held = self.deliveries.get_mut(&id)?;
                held.owner = Some(claim.owner.clone());
                held.lease_until = Some(ms(claim.lease_until));
                Some(held.delivery.clone())
            })
            .collect()
    }

    pub(super) fn update_delivery(&mut self, delivery: &Delivery, owner: &str) -> bool {
        let Some(held) = self.deliveries.get_mut(&delivery.id) else {
            return false;
        };
        if held.owner.as_deref() != Some(owner) || held.delivery.state != DeliveryState::Pending {
            return false;
        }
        let body = held.delivery.body.take();
        held.delivery = stored(delivery);
        held.delivery.body = body;
        held.owner = None;
        held.lease_until = None;
        true
    }

    pub(super) fn list_deliveries(&self, filter: &DeliveryFilter) -> Vec<Delivery> {
        self.deliveries
            .values()
            .map(|held| &held.delivery)
            .filter(|delivery| {
                filter
                    .execution
                    .is_none_or(|id| delivery.execution_id == id)
            })
            .filter(|delivery| filter.state.is_none_or(|state| delivery.state == state))
            .filter(|delivery| filter.after.is_none_or(|after| delivery.id > after))
            .take(filter.limit as usize)
            .cloned()
            .collect()
    }

    pub(super) fn redrive_delivery(&mut self, id: Uuid, now: DateTime<Utc>) -> bool {
        match self.deliveries.get_mut(&id) {
            Some(held) if held.delivery.state == DeliveryState::Failed => {
                held.delivery.state = DeliveryState::Pending;
                held.delivery.next_at = Some(ms(now));
                held.delivery.round_attempts = 0;
                held.owner = None;
                held.lease_until = None;
                true
            }
            _ => false,
        }
    }
}
