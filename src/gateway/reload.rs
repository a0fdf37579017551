//! What a new gateway snapshot needs besides being swapped in: nothing but a warning when it
//! asks for something only a restart can do.

use super::{Gateway, Snapshot};
use crate::reload::{Live, Reload, ReloadError};

impl Reload for Gateway {
    type Snapshot = Snapshot;

    fn live(&self) -> &Live<Snapshot> {
        &self.live
    }

    async fn prepare(&self, next: &Snapshot) -> Result<(), ReloadError> {
        let old = self.snapshot().config.listen;
        if next.config.listen != old {
            tracing::warn!(
                old = %old,
                new = %next.config.listen,
                "listen changed: still serving on the old address until restarted"
            );
        }
        Ok(())
    }
}
