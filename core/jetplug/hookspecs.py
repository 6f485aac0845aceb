"""Every hook a jetplug plugin can implement.

pluggy calls hooks synchronously. Hooks marked "async ok" may be ``async def``; the host awaits
them. Only :mod:`jetplug.plugins` calls these hooks; docs/plugin_hooks.md has one section per hook
(a test keeps the two in step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click
    import msgspec

    from .config import Config
    from .events import Event
    from .host import Host
    from .message import Message
    from .types import ConsumerSpec, Decision, KeyValueSpec, PubAck, Publish, StreamSpec

PROJECT = "jetplug"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --- configuration -----------------------------------------------------------------------------


@hookspec
def register_config_schema() -> type[msgspec.Struct] | None:
    """Return the msgspec ``Struct`` class that describes this plugin's ``[plugins.<name>]`` table.

    Fires once after plugins are loaded, before the configuration is validated. The host validates
    the plugin's table with it (reporting every problem with its key path) and hands the typed
    instance back through ``config.plugin("<name>")``. Use ``forbid_unknown_fields=True`` and
    ``kw_only=True`` on the class, and give every field a default.

    :return: the model class, or None when the plugin has no settings. Collected per plugin.
    """


@hookspec
def validate_config(config: Config) -> list[str] | None:
    """Check rules that span several tables or plugins, after every table validated on its own.

    :param config: the validated configuration.
    :return: a list of problem messages, each starting with the key path it is about
        (``plugins.x.subject: ...``); None or an empty list when all is well. Every problem from
        every plugin is reported together.
    """


@hookspec
def configure(config: Config) -> None:
    """Receive the validated configuration once, before any declaration hook. No I/O here.

    :param config: the validated configuration.
    :return: ignored.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``jetplug`` command line.

    Fires when the CLI is built, before arguments are parsed. Plugins that need the configuration
    should add a ``-c/--config`` option and call :func:`jetplug.cli.load_host_config`.

    :param cli: the root click group.
    :return: ignored.
    """


@hookspec
def register_hookspecs() -> object | None:
    """Add hooks of your own that other plugins can implement (datasette's advice: name them
    after your plugin, e.g. ``caf_adapter_assignment_published``).

    Fires once at load, after every plugin is registered and before hook names are checked, so
    implementations of your hooks in other plugins are not mistaken for typos. Call your hooks
    with ``host.plugins.notify("<hook>", ...)``.

    :return: a module or class whose functions carry the ``jetplug.hookspec`` marker; None for
        none. Returning the same module from several plugins is fine.
    """


# --- declarations ------------------------------------------------------------------------------


@hookspec
def register_streams(config: Config) -> list[StreamSpec] | None:
    """Declare the streams this plugin needs.

    Fires after ``configure``, before connecting. The host provisions them according to
    ``[jetstream] provision``. Two plugins declaring the same stream with different settings is a
    startup error naming both.

    :param config: the validated configuration.
    :return: a list of :class:`~jetplug.StreamSpec`; None for none. Collected from every plugin.
    """


@hookspec
def register_consumers(config: Config) -> list[ConsumerSpec] | None:
    """Declare the durable consumers this plugin owns; the host fetches and dispatches their
    messages.

    Fires after ``register_streams``. The declaring plugin becomes the consumer's owner. Two plugins
    declaring the same ``(stream, durable)`` is a startup error naming both.

    :param config: the validated configuration.
    :return: a list of :class:`~jetplug.ConsumerSpec`; None for none. Collected from every plugin.
    """


@hookspec
def register_kv_buckets(config: Config) -> list[KeyValueSpec] | None:
    """Declare the key-value buckets this plugin needs (provisioned like streams).

    :param config: the validated configuration.
    :return: a list of :class:`~jetplug.KeyValueSpec`; None for none. Collected from every plugin.
    """


# --- lifecycle ---------------------------------------------------------------------------------


@hookspec
def startup(host: Host) -> None:
    """Start the plugin's own work: the connection is up and declarations are provisioned.

    Fires once, before the first message is fetched. Async ok. Raise
    :class:`~jetplug.StartupError` to stop the host with a clear message.

    :param host: the running host (``host.publisher``, ``host.config``, ``host.kv(bucket)``).
    :return: ignored.
    """


@hookspec
def shutdown(host: Host) -> None:
    """Release what ``startup`` took. Fires after intake stopped and in-flight handlers finished,
    before the connection closes, in reverse registration order, each bounded by a timeout.
    Async ok.

    :param host: the running host; publishing still works here.
    :return: ignored.
    """


# --- messages ----------------------------------------------------------------------------------


@hookspec
def handle_message(msg: Message) -> Decision | None:
    """Decide what happens to one message of a consumer.

    Fires for every delivered message, in pluggy call order (``tryfirst`` implementations first).
    The first implementation that returns a decision wins; the others are not called. The owner
    of the consumer (``msg.consumer.owner``) answers for it; interceptors (dedup, policy) use
    ``tryfirst=True`` and return None to pass.

    Plain ``def`` or ``async def``: when every implementation is a plain function, the engine
    decides in the consumer's callback, one message after the other, and acks at once (the
    cheapest path, for handlers that never wait on I/O). An ``async def`` handler that waits runs
    concurrently with others, up to the consumer's ``in_flight`` budget.

    Raising an exception means "failed this time": the host naks with the consumer's retry delay
    for the delivery count, and at ``max_deliver`` terminates and dead-letters the message.

    :param msg: the message: ``data``, ``headers``, ``subject``, ``consumer`` (its spec) and
        JetStream metadata (``stream_seq``, ``consumer_seq``, ``deliveries``, ``pending``,
        ``timestamp``).
    :return: :class:`~jetplug.Ack`, :class:`~jetplug.Nak` (optional ``delay``),
        :class:`~jetplug.Term` (``reason``, ``error``: dead-lettered), or None to pass.
    """


# --- publishing --------------------------------------------------------------------------------


@hookspec
def before_publish(publish: Publish) -> None:
    """Adjust a publish before it is sent: add headers, set ``msg_id``, trace context.

    Fires for every publish through the host's publisher, once per publish (not per retry).
    Async ok.

    :param publish: the mutable :class:`~jetplug.Publish`.
    :return: ignored.
    """


@hookspec
def after_publish(publish: Publish, pub_ack: PubAck | None, error: Exception | None) -> None:
    """Observe the result of a publish: exactly one of ``pub_ack`` and ``error`` is set.

    Fires once per publish after its final attempt. Async ok; failures are logged, not raised.

    :param publish: the publish as sent.
    :param pub_ack: the server's :class:`~jetplug.PubAck`, or None.
    :param error: the :class:`~jetplug.PublishError`, or None.
    :return: ignored.
    """


# --- telemetry ---------------------------------------------------------------------------------


@hookspec
def track_event(event: Event) -> None:
    """Observe one telemetry event (connection change, message handled, published, ...).

    Fires synchronously on the host's event loop for every event: keep it cheap and never block.
    A raising implementation is logged and skipped; the event still reaches the others.

    :param event: an instance of a :mod:`jetplug.events` class.
    :return: ignored.
    """


#: hooks whose implementations may be ``async def``
ASYNC_HOOKS = frozenset(
    {"startup", "shutdown", "handle_message", "before_publish", "after_publish"}
)


def all_hook_names() -> list[str]:
    """Names of every hook spec in this module, in definition order."""
    import inspect

    return [
        name
        for name, obj in globals().items()
        if inspect.isfunction(obj) and hasattr(obj, PROJECT + "_spec")
    ]


__all__ = ["ASYNC_HOOKS", "PROJECT", "all_hook_names", "hookimpl", "hookspec"]
