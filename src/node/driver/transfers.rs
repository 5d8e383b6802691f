//! The driver's side of the transfer core: carrying out its actions
//! (plan, send), starting a task for each incoming stream, and turning its
//! events, and the byte counters, into node events and progress.

use super::*;

impl Driver {
    /// Carries out what the transfer core asks: frames to the links, tasks
    /// to start, events to the app; until it asks nothing more.
    pub(super) fn pump_transfers(&mut self) {
        loop {
            let mut any = false;
            while let Some((peer, bytes)) = self.transfers.poll_transmit() {
                any = true;
                if let Some(l) = self.conns.get(&peer) {
                    l.send_encoded(bytes);
                }
            }
            while let Some(a) = self.transfers.poll_action() {
                any = true;
                self.transfer_action(a);
            }
            while let Some(e) = self.transfers.poll_event() {
                any = true;
                self.transfer_event(e);
            }
            if !any {
                return;
            }
        }
    }

    /// Lets go of the destinations transfer `id` held.
    fn release(&mut self, id: TransferId) {
        transfer::release(&self.claims, id);
    }

    pub(super) fn io(&mut self, id: TransferId) -> &mut Io {
        let n = self.transfers.item_count(id);
        self.io.entry(id).or_insert_with(|| Io::new(n))
    }

    pub(super) fn transfer_action(&mut self, a: tcore::Action) {
        let tx = self.inputs.clone();
        match a {
            tcore::Action::Plan { id, items } => {
                let (root, overwrite) = (self.config.download_dir.clone(), self.config.overwrite);
                let claims = self.claims.clone();
                self.tasks.spawn(async move {
                    let r = tokio::task::spawn_blocking(move || {
                        transfer::plan(&root, &items, overwrite, &claims, id)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(OfferError::Folder(std::io::Error::other(e.to_string())))
                    });
                    let _ = tx.send(Input::Planned(id, r));
                });
            }
            tcore::Action::Send { id, peer, wanted } => {
                let Some(conn) = self.conns.get(&peer).map(|l| l.conn.clone()) else {
                    self.transfers.handle_sent(id, Err(Reason::PeerLost));
                    return;
                };
                let (streams, cache) = (self.config.streams, self.config.hash_cache.clone());
                let io = self.io(id);
                let (counters, cancel) = (io.counters.clone(), io.cancel.subscribe());
                self.tasks.spawn(async move {
                    let r = transfer::send_items(
                        conn,
                        wanted,
                        counters,
                        cancel,
                        streams,
                        cache.clone(),
                    )
                    .await;
                    if let Some(cache) = cache {
                        let _ = tokio::task::spawn_blocking(move || cache.save()).await;
                    }
                    let _ = tx.send(Input::Sent(id, r));
                });
            }
        }
    }

    pub(super) fn transfer_event(&mut self, e: tcore::Event) {
        let event = match e {
            tcore::Event::Offered {
                id,
                from,
                items,
                consented,
            } => {
                self.io(id);
                NodeEvent::OfferReceived {
                    transfer: id,
                    from,
                    items,
                    consented,
                }
            }
            tcore::Event::Started {
                id,
                peer,
                direction,
                files,
                bytes,
                resumed,
            } => {
                // The I/O side exists from here on (auto-accepted offers too).
                self.io(id);
                NodeEvent::TransferStarted {
                    transfer: id,
                    peer,
                    direction,
                    files,
                    bytes,
                    resumed,
                }
            }
            tcore::Event::FileReceived {
                id,
                from,
                index,
                path,
            } => {
                self.endpoint.touch(now(), from);
                NodeEvent::FileReceived {
                    transfer: id,
                    index,
                    path,
                }
            }
            tcore::Event::TextReceived {
                id,
                from,
                index,
                text,
            } => {
                self.endpoint.touch(now(), from);
                NodeEvent::TextReceived {
                    transfer: id,
                    from,
                    index,
                    text,
                }
            }
            tcore::Event::Done {
                id,
                peer,
                direction,
                files,
                already_had,
                total,
                elapsed,
            } => {
                self.release(id);
                // Dropping the I/O side stops whatever task is left.
                let moved = self.io.remove(&id).map_or(0, |io| {
                    io.counters.moved.load(std::sync::atomic::Ordering::Relaxed)
                });
                if total > 0 {
                    self.emit(NodeEvent::Progress(Progress {
                        transfer: id,
                        peer,
                        direction,
                        done: total,
                        total,
                        rate: 0.0,
                        eta: Some(Duration::ZERO),
                        files: Vec::new(),
                    }));
                }
                NodeEvent::TransferDone {
                    transfer: id,
                    peer,
                    direction,
                    bytes: moved,
                    elapsed,
                    files,
                    already_had,
                }
            }
            tcore::Event::Failed {
                id,
                peer,
                direction,
                reason,
            } => {
                self.release(id);
                self.io.remove(&id);
                NodeEvent::TransferFailed {
                    transfer: id,
                    peer,
                    direction,
                    reason,
                }
            }
            // A transfer that could not be planned (no space, a name it
            // cannot take) fails as that transfer, with its reason, in the
            // TransferFailed that follows; it is not a node error (an app
            // like `receive` goes on).
            tcore::Event::PlanFailed { .. } => return,
            // The transfer's failure (protocol violation) follows.
            _ => return,
        };
        self.emit(event);
    }

    pub(super) fn incoming_stream(
        &mut self,
        peer: PeerId,
        h: StreamHeader,
        mut recv: quinn::RecvStream,
    ) {
        let grant = match self.transfers.handle_stream(peer, &h) {
            Ok(g) => g,
            Err(reason) => {
                let _ = recv.stop(code(reason));
                return;
            }
        };
        let part = match &grant.dest {
            tcore::Sink::File(dest) => transfer::shared(&self.claims, dest),
            tcore::Sink::Text => None,
        };
        let receipt = Receipt {
            id: grant.id,
            part,
            index: grant.index,
            dest: grant.dest,
            item: grant.item,
            offset: grant.offset,
            spans: grant.spans,
            overwrite: self.config.overwrite,
        };
        let io = self.io(grant.id);
        let (counters, cancel) = (io.counters.clone(), io.cancel.subscribe());
        let (tx, id) = (self.inputs.clone(), grant.id);
        self.tasks.spawn(async move {
            let index = receipt.index;
            let r = transfer::receive_item(recv, receipt, counters, cancel).await;
            let _ = tx.send(Input::Received(id, index, r));
        });
    }

    pub(super) fn progress(&mut self) {
        let t = tokio::time::Instant::now();
        let mut out = Vec::new();
        for (id, io) in self.io.iter_mut() {
            let Some(v) = self.transfers.moving(*id) else {
                continue;
            };
            let resumed = v.offsets.values().fold(0u64, |a, b| a.saturating_add(*b));
            let done = resumed
                .saturating_add(io.counters.moved.load(std::sync::atomic::Ordering::Relaxed));
            let rate = io.meter.sample(t, done);
            if done == io.last_done {
                continue;
            }
            io.last_done = done;
            let eta = (rate > 0.0)
                .then(|| Duration::from_secs_f64(v.total.saturating_sub(done) as f64 / rate));
            out.push(Progress {
                transfer: *id,
                peer: v.peer,
                direction: v.direction,
                done,
                total: v.total,
                rate,
                eta,
                files: io.counters.files(v.items, v.offsets),
            });
        }
        for p in out {
            // Bytes moving count as activity for the idle timeout.
            self.endpoint.touch(now(), p.peer);
            self.emit(NodeEvent::Progress(p));
        }
    }
}
