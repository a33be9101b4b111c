"""A positional index of a local result folder's journals, so a results page costs O(page).

Journals hold records in the order items finished; a page wants them in plan order. The index keeps
one checksummed slot per plan index under `<storage>/fanout/<instance>/results-index/`; whoever reads
brings it up to date from the journals' new bytes. It is only a shortcut: damage found while reading
rebuilds it from the journals, so a finished item is never shown as pending because of the index.
The layout is in docs/design/checkpoint-format.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fanout.core.private_files import make_folders, open_private
from fanout.storage import checkpoint_format
from fanout.storage.checkpoints import JOURNAL_PREFIX
from fanout.storage.written import WrittenRecords

INDEX_FOLDER = "results-index"
SLOTS_FILE = "slots"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
READ_BLOCK = 16 * 1024 * 1024
SLOT = struct.Struct("<IQII")
"""A slot: journal number, offset of the record's first byte, its length without the LF (0: none), check."""
CHECKED = struct.Struct("<QIQI")
"""What a slot's check covers: its own plan index, then its journal number, offset and length."""
INDEX_VERSION = 2
EMPTY_SLOT = bytes(SLOT.size)

logger = logging.getLogger(__name__)
PlanKeys = Callable[[], Sequence[bytes]]
"""The plan's keys in order, each as records hold it (`checkpoint_format.encoded_key`)."""


class DamagedIndex(Exception):
    """The index does not describe the journals it was built from; the message says how."""


def packed_slot(index: int, number: int, where: int, length: int) -> bytes:
    """The slot of plan item `index`: where its record is, and a check binding that to `index`."""
    return SLOT.pack(number, where, length, zlib.crc32(CHECKED.pack(index, number, where, length)))


def write_slots(slots: int, found: dict[int, bytes]) -> None:
    """Write the packed slots `found` (by plan index) into the slots file, one write per run of
    consecutive indexes: a journal holds its task run's items, mostly in plan order."""
    ordered = sorted(found)
    if ordered and ordered[-1] - ordered[0] + 1 == len(ordered):  # one run: a stage's batch, in plan order
        os.pwrite(slots, b"".join([found[index] for index in ordered]), ordered[0] * SLOT.size)
        return
    start = 0
    for position in range(1, len(ordered) + 1):
        if position == len(ordered) or ordered[position] != ordered[position - 1] + 1:
            run = ordered[start:position]
            os.pwrite(slots, b"".join(found[index] for index in run), run[0] * SLOT.size)
            start = position


class ResultsIndex:
    """The index of one instance's journals (`journals`, its checkpoint folder) by plan index."""

    def __init__(self, instance_folder: str, journals: str, plan_digest: str) -> None:
        self.folder = os.path.join(instance_folder, INDEX_FOLDER)
        self.journals = journals
        self.plan_digest = plan_digest

    def refresh(self, plan_keys: PlanKeys, written: WrittenRecords | None = None) -> None:
        """Index every whole record appended to the journals since the last refresh.

        `written`: where this process's journals put the records it appended; the
        bytes of a journal it accounts for exactly are indexed from it, unread.
        """
        make_folders(self.folder)
        with self._locked():
            state = self._state()
            sizes = self._journal_sizes()
            known: dict[str, list[int]] = state["journals"]
            if any(sizes.get(name, 0) < indexed for name, (_, indexed) in known.items()):
                state = self._reset()
                known = state["journals"]
            grown = {name: size for name, size in sizes.items() if size > known.get(name, [0, 0])[1]}
            if not grown:
                return
            where = {key: index for index, key in enumerate(plan_keys())}
            slots = open_private(os.path.join(self.folder, SLOTS_FILE), os.O_RDWR | os.O_CREAT)
            try:
                for name in sorted(grown):
                    number, indexed = known.setdefault(name, [len(known), 0])
                    places = written.placed(name, indexed, grown[name]) if written is not None else None
                    if places is None:
                        known[name] = [number, self._index_tail(name, number, indexed, where, slots)]
                    else:
                        _index_places(places, number, where, slots)
                        known[name] = [number, grown[name]]
            finally:
                os.close(slots)
            state["slots"] = self._slots_digest()
            self._save(state)

    def locate(self, offset: int, count: int) -> list[tuple[str, int, int] | None]:
        """Journal name, offset and length of the records of plan items `offset .. offset+count-1`;
        `DamagedIndex` for a slot that is neither empty nor sound."""
        state = self._stored_state()
        if state is None or state.get("digest") != self.plan_digest:
            return [None] * count
        names = {number: name for name, (number, _) in state["journals"].items()}
        try:
            with open(os.path.join(self.folder, SLOTS_FILE), "rb") as slots:
                data = os.pread(slots.fileno(), count * SLOT.size, offset * SLOT.size)
        except FileNotFoundError:
            data = b""
        found: list[tuple[str, int, int] | None] = []
        for position in range(count):
            start = position * SLOT.size
            slot = data[start : start + SLOT.size]
            if len(slot) < SLOT.size or slot == EMPTY_SLOT:
                found.append(None)
                continue
            number, where, length, check = SLOT.unpack(slot)
            if check != zlib.crc32(CHECKED.pack(offset + position, number, where, length)) or number not in names:
                raise DamagedIndex(f"slot {offset + position} does not check")
            found.append((names[number], where, length))
        return found

    def read(self, offset: int, window: Sequence[str], plan_keys: PlanKeys) -> dict[str, Any]:
        """The results of those keys of `window` (plan items from `offset`) that have a sound record;
        a damaged index is rebuilt from the journals (with a warning) and read again."""
        self.refresh(plan_keys)
        try:
            return self._read(offset, window)
        except DamagedIndex as damage:
            logger.warning(
                "results index of %s is damaged (%s): rebuilt from the journals", os.path.dirname(self.folder), damage
            )
            self.rebuild(plan_keys)
            return self._read(offset, window)

    def rebuild(self, plan_keys: PlanKeys) -> None:
        """Drop the index and index every journal again."""
        make_folders(self.folder)
        with self._locked():
            self._save(self._reset())
        self.refresh(plan_keys)

    def _read(self, offset: int, window: Sequence[str]) -> dict[str, Any]:
        """The page's records as the index places them, read while no refresh writes (a shared lock)."""
        with self._locked(shared=True):
            places = self.locate(offset, len(window))
            if None in places:
                self._check_slots()  # an item without a record: only if the slots are the ones last written
            return self._records(window, places)

    def _records(self, window: Sequence[str], places: Sequence[tuple[str, int, int] | None]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        opened: dict[str, int] = {}
        try:
            for key, place in zip(window, places, strict=True):
                if place is None:
                    continue
                name, where, length = place
                if name not in opened:
                    opened[name] = os.open(os.path.join(self.journals, name), os.O_RDONLY)
                try:
                    stored, result = checkpoint_format.decode(os.pread(opened[name], length, where))
                except checkpoint_format.UnreadableRecord:
                    raise DamagedIndex(f"the slot of {key!r} names no sound record") from None
                if stored != key:
                    raise DamagedIndex(f"the slot of {key!r} names the record of {stored!r}")
                found[key] = result
        finally:
            for descriptor in opened.values():
                os.close(descriptor)
        return found

    def _index_tail(self, name: str, number: int, indexed: int, where: dict[bytes, int], slots: int) -> int:
        """Index the whole records of journal `name` after byte `indexed`; the new indexed size."""
        with open(os.path.join(self.journals, name), "rb") as journal:
            journal.seek(indexed)
            while block := journal.read(READ_BLOCK):
                end = block.rfind(b"\n") + 1  # a last line without its LF is read again with the next block
                if end == 0:
                    if len(block) < READ_BLOCK:
                        break  # a write still going (or cut short): indexed once whole
                    block += journal.readline()  # one line longer than a block
                    end = block.rfind(b"\n") + 1
                    if end == 0:
                        break
                self._index_block(block, end, indexed, number, where, slots)
                indexed += end
                journal.seek(indexed)
        return indexed

    @staticmethod
    def _index_block(block: bytes, end: int, at: int, number: int, where: dict[bytes, int], slots: int) -> None:
        """Index the whole lines of `block[:end]`, which starts at byte `at` of journal `number`."""
        found: dict[int, bytes] = {}
        for start, length, key in checkpoint_format.sound_records(block, end):
            index = where.get(key)
            if index is not None:
                found[index] = packed_slot(index, number, at + start, length)
        write_slots(slots, found)

    def _journal_sizes(self) -> dict[str, int]:
        try:
            names = [name for name in os.listdir(self.journals) if name.startswith(JOURNAL_PREFIX)]
        except FileNotFoundError:
            return {}
        return {name: os.stat(os.path.join(self.journals, name)).st_size for name in names}

    def _stored_state(self) -> dict[str, Any] | None:
        """The state as stored, or None when missing, of another version, or not of the shape written."""
        try:
            with open(os.path.join(self.folder, STATE_FILE), encoding="utf-8") as source:
                state = json.load(source)
        except (FileNotFoundError, ValueError):
            return None
        if not (isinstance(state, dict) and state.get("version") == INDEX_VERSION and "slots" in state):
            return None
        journals = state.get("journals")
        if not isinstance(journals, dict) or not all(_journal_entry(entry) for entry in journals.values()):
            return None
        return state

    def _check_slots(self) -> None:
        """`DamagedIndex` unless the slots are the bytes the last refresh wrote (called under the lock)."""
        state = self._stored_state()
        if state is not None and state.get("digest") == self.plan_digest and state["slots"] != self._slots_digest():
            raise DamagedIndex("the slots are not the ones last written")

    def _slots_digest(self) -> str | None:
        try:
            with open(os.path.join(self.folder, SLOTS_FILE), "rb") as slots:
                return hashlib.file_digest(slots, "sha256").hexdigest()
        except FileNotFoundError:
            return None

    def _state(self) -> dict[str, Any]:
        """The stored state, or a fresh one (slots dropped) when missing or of another plan; under the lock."""
        state = self._stored_state()
        return state if state is not None and state.get("digest") == self.plan_digest else self._reset()

    def _reset(self) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.folder, SLOTS_FILE))
        return {"version": INDEX_VERSION, "digest": self.plan_digest, "journals": {}, "slots": None}

    def _save(self, state: dict[str, Any]) -> None:
        partial = os.path.join(self.folder, f"{STATE_FILE}.{os.getpid()}.partial")
        descriptor = open_private(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(descriptor, "w", encoding="utf-8") as target:
            json.dump(state, target)
        os.replace(partial, os.path.join(self.folder, STATE_FILE))

    @contextlib.contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        """One refresher at a time, and no reader while one writes, across processes (the webhook, the
        CLI, the flow); readers share the lock."""
        descriptor = open_private(os.path.join(self.folder, LOCK_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        with os.fdopen(descriptor, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _index_places(places: list[tuple[str, int, int]], number: int, where: dict[bytes, int], slots: int) -> None:
    """Index the records of journal `number` at the places its writer noted (key, offset, length without the LF)."""
    found: dict[int, bytes] = {}
    encoded, slot, checked, check = checkpoint_format.encoded_key, SLOT.pack, CHECKED.pack, zlib.crc32
    for key, offset, length in places:  # `packed_slot`, spelled out: this loop runs once per item of a run
        index = where.get(encoded(key))
        if index is not None:
            found[index] = slot(number, offset, length, check(checked(index, number, offset, length)))
    write_slots(slots, found)


def _journal_entry(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, int) for part in entry)
