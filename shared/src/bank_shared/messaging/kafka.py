"""Creating the topics a service uses, with their partition counts and settings, if missing."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from bank_shared.settings import KafkaSettings
from bank_shared.topics import TopicSpec

log = logging.getLogger(__name__)


async def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec]) -> None:
    """Create the topics that do not exist yet, with their partition counts and configs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(s.name, s.partitions, replication_factor=1, topic_configs=s.config)
            for s in specs
            if s.name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *_ in response.topic_errors:
                error = for_code(code)
                # Another instance may have created it between our list and our create.
                if code != 0 and error is not TopicAlreadyExistsError:
                    raise error(f"creating topic {name} failed")
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()
