//! Methods of the channel, exchange, queue, confirm, tx and access classes, and the
//! dispatch of every method on an open channel to its handler.

use crate::metrics::Counter;
use std::sync::Arc;

use amq_protocol::protocol::{
    access, basic, channel as chan, confirm, exchange, queue, tx, AMQPClass,
};
use tracing::debug;

use super::channel::TxOp;
use super::confirms::Confirms;
use super::permit::Kind;
use super::Connection;
use crate::access::Perm;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::Destination;
use crate::queue::Queue;
use crate::vhost::{ExchangeSpec, QueueSpec, VHost};

impl Connection {
    pub(super) fn vhost(&self) -> AmqpResult<Arc<VHost>> {
        self.vhost
            .clone()
            .ok_or_else(|| AmqpError::command_invalid("connection not open"))
    }

    /// `""` means the channel's last declared queue, as in RabbitMQ.
    pub(super) fn queue_name(&self, ch: u16, name: &str) -> AmqpResult<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        self.channels
            .get(&ch)
            .and_then(|c| c.last_queue.clone())
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    /// A queue this connection may use with `perm`: 403 if not permitted, 404 if missing,
    /// 405 if another's exclusive queue.
    pub(super) fn usable_queue(
        &mut self,
        ch: u16,
        name: &str,
        perm: Perm,
    ) -> AmqpResult<Arc<Queue>> {
        let name = self.queue_name(ch, name)?;
        self.permit(perm, Kind::Queue, &name)?;
        let q = self.vhost()?.queue_or_404(&name)?;
        q.check_exclusive(self.id)?;
        Ok(q)
    }

    pub(super) fn dispatch_method(&mut self, ch: u16, class: AMQPClass) -> AmqpResult<()> {
        match class {
            AMQPClass::Channel(m) => self.channel_class(ch, m),
            AMQPClass::Exchange(m) => self.exchange_class(ch, m),
            AMQPClass::Queue(m) => self.queue_class(ch, m),
            AMQPClass::Basic(m) => self.basic_class(ch, m),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(m)) => self.confirm_select(ch, m.nowait),
            AMQPClass::Tx(m) => self.tx_class(ch, m),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                // Deprecated, but RabbitMQ still answers it.
                self.write_method(
                    ch,
                    &AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Connection(_) => Err(AmqpError::command_invalid(
                "connection method on a non-zero channel",
            )),
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn channel_class(&mut self, ch: u16, m: chan::AMQPMethod) -> AmqpResult<()> {
        match m {
            chan::AMQPMethod::Open(_) => Err(AmqpError::channel_error(format!(
                "second 'channel.open' seen on channel {ch}"
            ))),
            chan::AMQPMethod::Close(c) => {
                debug!(channel = ch, code = c.reply_code, "client closed channel");
                if let Some(mut c) = self.channels.remove(&ch) {
                    self.release_channel(&mut c);
                }
                self.write_method(
                    ch,
                    &AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
                );
                Ok(())
            }
            chan::AMQPMethod::CloseOk(_) => Ok(()),
            chan::AMQPMethod::Flow(f) => {
                if !f.active {
                    // RabbitMQ does not let clients stop the server's deliveries this way.
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.write_method(
                    ch,
                    &AMQPClass::Channel(chan::AMQPMethod::FlowOk(chan::FlowOk { active: true })),
                );
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn exchange_class(&mut self, ch: u16, m: exchange::AMQPMethod) -> AmqpResult<()> {
        let vhost = self.vhost()?;
        match m {
            exchange::AMQPMethod::Declare(d) => {
                if !d.passive {
                    let name = d.exchange.as_str();
                    self.permit(Perm::Configure, Kind::Exchange, name)?;
                    if let Some(ae) = crate::args::get_str(&d.arguments, "alternate-exchange")
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                    {
                        self.permit(Perm::Read, Kind::Exchange, name)?;
                        self.permit(Perm::Write, Kind::Exchange, &ae)?;
                    }
                }
                vhost.declare_exchange(ExchangeSpec {
                    name: d.exchange.as_str(),
                    kind: d.kind.as_str(),
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: d.arguments,
                })?;
                if !d.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                            exchange::DeclareOk {},
                        )),
                    );
                }
            }
            exchange::AMQPMethod::Delete(d) => {
                // The default and amq.* exchanges are refused (403) before permissions.
                let name = d.exchange.as_str();
                if !name.is_empty() && !name.starts_with("amq.") {
                    self.permit(Perm::Configure, Kind::Exchange, name)?;
                }
                vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                if !d.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                    );
                }
            }
            exchange::AMQPMethod::Bind(b) => {
                not_default_exchange(b.destination.as_str())?;
                not_default_exchange(b.source.as_str())?;
                self.permit_binding(
                    Kind::Exchange,
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                )?;
                let dest = vhost.exchange_or_404(b.destination.as_str())?;
                vhost.bind(
                    b.source.as_str(),
                    Destination::Exchange(dest),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                if !b.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                    );
                }
            }
            exchange::AMQPMethod::Unbind(b) => {
                not_default_exchange(b.destination.as_str())?;
                not_default_exchange(b.source.as_str())?;
                self.permit_binding(
                    Kind::Exchange,
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                )?;
                // A missing destination makes unbind a no-op, as in RabbitMQ.
                if let Some(dest) = vhost.exchange(b.destination.as_str()) {
                    vhost.unbind(
                        b.source.as_str(),
                        Destination::Exchange(dest),
                        b.routing_key.as_str(),
                        b.arguments,
                    )?;
                }
                if !b.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                    );
                }
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    fn queue_class(&mut self, ch: u16, m: queue::AMQPMethod) -> AmqpResult<()> {
        let vhost = self.vhost()?;
        match m {
            queue::AMQPMethod::Declare(d) => {
                let requested = d.queue.as_str();
                if !d.passive && requested.starts_with("amq.") {
                    return Err(AmqpError::access_refused(format!(
                        "queue name '{requested}' contains reserved prefix 'amq.*'"
                    )));
                }
                // A passive declare does not expand "" (RabbitMQ answers 404 for it).
                let name = if requested.is_empty() && !d.passive {
                    crate::names::queue_name()
                } else {
                    requested.to_string()
                };
                crate::metrics::count(Counter::QueuesDeclared, 1);
                if !d.passive {
                    self.permit(Perm::Configure, Kind::Queue, &name)?;
                    if let Some(dlx) = crate::args::get_str(&d.arguments, "x-dead-letter-exchange")
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                    {
                        self.permit(Perm::Read, Kind::Queue, &name)?;
                        self.permit(Perm::Write, Kind::Exchange, &dlx)?;
                    }
                    if let Some(max) = self.broker.vhost_queue_limit(&vhost.name) {
                        if vhost.queue(&name).is_none() && vhost.queue_count() as u64 >= max {
                            return Err(AmqpError::precondition_failed(format!(
                                "cannot declare queue '{name}': queue limit in vhost '{}' ({max}) is reached",
                                vhost.name
                            )));
                        }
                    }
                }
                let (q, created) = vhost.declare_queue(
                    QueueSpec {
                        name,
                        durable: d.durable,
                        exclusive: d.exclusive,
                        auto_delete: d.auto_delete,
                        arguments: d.arguments,
                    },
                    d.passive,
                    self.id,
                )?;
                if created {
                    crate::metrics::count(Counter::QueuesCreated, 1);
                }
                if let Some(c) = self.channels.get_mut(&ch) {
                    c.last_queue = Some(q.name.clone());
                }
                if !d.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                            queue: q.name.as_str().into(),
                            message_count: q.message_count(),
                            consumer_count: q.consumer_count(),
                        })),
                    );
                }
            }
            queue::AMQPMethod::Bind(b) => {
                let name = self.queue_name(ch, b.queue.as_str())?;
                not_default_exchange(b.exchange.as_str())?;
                self.permit_binding(
                    Kind::Queue,
                    &name,
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                )?;
                let q = self.vhost()?.queue_or_404(&name)?;
                q.check_exclusive(self.id)?;
                vhost.bind(
                    b.exchange.as_str(),
                    Destination::Queue(q),
                    b.routing_key.as_str(),
                    b.arguments,
                )?;
                if !b.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                    );
                }
            }
            queue::AMQPMethod::Unbind(b) => {
                let name = self.queue_name(ch, b.queue.as_str())?;
                not_default_exchange(b.exchange.as_str())?;
                self.permit_binding(
                    Kind::Queue,
                    &name,
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                )?;
                // A missing queue makes unbind a no-op, as in RabbitMQ.
                if let Some(q) = vhost.queue(&name) {
                    q.check_exclusive(self.id)?;
                    vhost.unbind(
                        b.exchange.as_str(),
                        Destination::Queue(q),
                        b.routing_key.as_str(),
                        b.arguments,
                    )?;
                }
                self.write_method(
                    ch,
                    &AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                );
            }
            queue::AMQPMethod::Purge(p) => {
                let q = self.usable_queue(ch, p.queue.as_str(), Perm::Read)?;
                let n = q.purge();
                if !p.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count: n,
                        })),
                    );
                }
            }
            queue::AMQPMethod::Delete(d) => {
                let name = self.queue_name(ch, d.queue.as_str())?;
                self.permit(Perm::Configure, Kind::Queue, &name)?;
                let n = match vhost.queue(&name) {
                    None => 0, // idempotent, as RabbitMQ
                    Some(q) => {
                        q.check_exclusive(self.id)?;
                        if d.if_unused && q.consumer_count() > 0 {
                            return Err(AmqpError::precondition_failed(format!(
                                "queue '{name}' in vhost '{}' in use",
                                vhost.name
                            )));
                        }
                        if d.if_empty && q.message_count() > 0 {
                            return Err(AmqpError::precondition_failed(format!(
                                "queue '{name}' in vhost '{}' is not empty",
                                vhost.name
                            )));
                        }
                        self.delete_queue(&vhost, &q)
                    }
                };
                if !d.nowait {
                    self.write_method(
                        ch,
                        &AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                            message_count: n,
                        })),
                    );
                }
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    /// Deletes a queue and tells its consumers (basic.cancel to those who can hear it).
    pub(super) fn delete_queue(&mut self, vhost: &VHost, q: &Arc<Queue>) -> u32 {
        let Some(d) = vhost.delete_queue(q) else {
            return 0;
        };
        for c in d.consumers {
            c.outbox.cancelled(c.channel, &c.tag);
        }
        d.messages
    }

    fn confirm_select(&mut self, ch: u16, nowait: bool) -> AmqpResult<()> {
        let c = self.channel_mut(ch)?;
        if c.tx.is_some() {
            return Err(AmqpError::precondition_failed(
                "cannot switch from tx to confirm mode",
            ));
        }
        if c.confirms.is_none() {
            c.confirms = Some(Confirms::default());
        }
        if !nowait {
            self.write_method(
                ch,
                &AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
            );
        }
        Ok(())
    }

    fn tx_class(&mut self, ch: u16, m: tx::AMQPMethod) -> AmqpResult<()> {
        match m {
            tx::AMQPMethod::Select(_) => {
                let c = self.channel_mut(ch)?;
                if c.confirms.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                if c.tx.is_none() {
                    c.tx = Some(Vec::new());
                }
                self.write_method(
                    ch,
                    &AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
                );
            }
            tx::AMQPMethod::Commit(_) => {
                let ops = {
                    let c = self.channel_mut(ch)?;
                    let ops = c.tx.as_mut().ok_or_else(|| {
                        AmqpError::precondition_failed("channel is not transactional")
                    })?;
                    std::mem::take(ops)
                };
                for op in ops {
                    match op {
                        TxOp::Publish(content) => {
                            let ex = self.publish_exchange(ch, &content)?;
                            self.route_and_enqueue(ch, &ex, content, None)?
                        }
                        TxOp::Ack(d) => self.settle(d),
                        TxOp::Reject {
                            deliveries,
                            requeue,
                        } => self.reject(deliveries, requeue),
                    }
                }
                self.channel_credit_freed(ch);
                if self.sync.wrote_durably {
                    // commit-ok once the commit's persistent messages are synced.
                    let token = self.sync.token + 1;
                    self.channel_mut(ch)?.commits_waiting.push_back(token);
                } else {
                    self.write_method(
                        ch,
                        &AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                    );
                }
            }
            tx::AMQPMethod::Rollback(_) => {
                let ops = {
                    let c = self.channel_mut(ch)?;
                    let ops = c.tx.as_mut().ok_or_else(|| {
                        AmqpError::precondition_failed("channel is not transactional")
                    })?;
                    std::mem::take(ops)
                };
                // Acks and rejects are undone: those deliveries are unacked again.
                let c = self.channel_mut(ch)?;
                for op in ops {
                    match op {
                        TxOp::Publish(_) => {}
                        TxOp::Ack(d) | TxOp::Reject { deliveries: d, .. } => c.restore_unacked(d),
                    }
                }
                self.write_method(
                    ch,
                    &AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    pub(super) fn channel_mut(&mut self, ch: u16) -> AmqpResult<&mut super::Channel> {
        self.channels.get_mut(&ch).map(|c| &mut **c).ok_or_else(|| {
            AmqpError::channel_error(format!("expected 'channel.open' on channel {ch}"))
        })
    }

    pub(super) fn basic_class(&mut self, ch: u16, m: basic::AMQPMethod) -> AmqpResult<()> {
        match m {
            basic::AMQPMethod::Consume(c) => self.on_consume(ch, c),
            basic::AMQPMethod::Cancel(c) => self.on_cancel(ch, c.consumer_tag.as_str(), c.nowait),
            basic::AMQPMethod::Get(g) => self.on_get(ch, g.queue.as_str(), g.no_ack),
            basic::AMQPMethod::Ack(a) => self.on_ack(ch, a.delivery_tag, a.multiple),
            basic::AMQPMethod::Reject(r) => self.on_reject(ch, r.delivery_tag, false, r.requeue),
            basic::AMQPMethod::Nack(n) => self.on_reject(ch, n.delivery_tag, n.multiple, n.requeue),
            basic::AMQPMethod::Recover(r) => self.on_recover(ch, r.requeue, true),
            basic::AMQPMethod::RecoverAsync(r) => self.on_recover(ch, r.requeue, false),
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }
}

impl Connection {
    /// A binding (or unbinding) of `dest` to the exchange `source`: write on the
    /// destination, read on the source, and, for a topic exchange with topic permissions,
    /// read on the binding key; all before either end is looked up (403 before 404).
    fn permit_binding(
        &mut self,
        kind: Kind,
        dest: &str,
        source: &str,
        key: &str,
    ) -> AmqpResult<()> {
        self.permit(Perm::Write, kind, dest)?;
        self.permit(Perm::Read, Kind::Exchange, source)?;
        if self.fresh_grants().has_topic_rules(source) {
            let topic = self
                .vhost()?
                .exchange(source)
                .is_some_and(|x| x.kind == crate::exchange::ExchangeKind::Topic);
            if topic {
                self.permit_topic(Perm::Read, source, key)?;
            }
        }
        Ok(())
    }
}

/// RabbitMQ refuses any binding to or from the default exchange (403) before other checks.
fn not_default_exchange(name: &str) -> AmqpResult<()> {
    if name.is_empty() {
        return Err(AmqpError::access_refused(
            "operation not permitted on the default exchange",
        ));
    }
    Ok(())
}
