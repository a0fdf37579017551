//! What a new sidecar snapshot needs besides being swapped in: its tunnels bound (added ones
//! listening, removed ones no longer accepting) and their warm connections kept, in place
//! of the old snapshot's, before it takes effect.

use std::sync::Arc;

use super::{Sidecar, Snapshot};
use crate::reload::{Live, Reload, ReloadError};

impl Reload for Arc<Sidecar> {
    type Snapshot = Snapshot;

    fn live(&self) -> &Live<Snapshot> {
        &self.live
    }

    async fn prepare(&self, next: &Snapshot) -> Result<(), ReloadError> {
        self.bind_tunnels(next).await?;
        super::log_routes(next);
        self.warm_tunnels(next);
        Ok(())
    }
}
