import LMDB

extension EventLog {
    /// Upgrades a log of format 1, which kept each incident's stream in `streams` under `incident id ‖ 0x00 ‖
    /// version`, to format 2, which keeps it in `incident-streams` under ``Keys/stream(start:version:)``.
    ///
    /// The events, their hash chain and every other database stay as they are. The old keys are read in order,
    /// so each incident's entries come together with version 1 first, and the position of version 1 is where
    /// the incident starts. The copy runs in transactions of `entriesPerCommit`; the last one drops `streams`
    /// and writes the new format tag. A crash before that leaves the log at format 1 with a partial copy, which
    /// the next start clears and makes again.
    func upgradeFromFormat1() throws {
        let entriesPerCommit = max(1, options.upgradeEntriesPerCommit)
        let old: Database
        do {
            old = try environment.openDatabase("streams", create: false)
        } catch let error as LMDBError where error.isNotFound {
            throw LogError(.corrupt, "\(options.directory) is marked as log format 1 but has no streams database")
        }
        try environment.write { txn in try txn.drop(db.streams, delete: false) }
        var progress = UpgradeProgress()
        var copied = 0
        while !progress.done {
            try stopIfAsked(during: "while upgrading the log to format 2, with \(copied) stream entries copied")
            if copied > 0 { options.onProgress?("upgrading the log to format 2: \(copied) stream entries copied") }
            copied += entriesPerCommit
            // Each write may be run again after the map grows, so it starts from `progress` and returns the next.
            progress = try environment.write { txn -> UpgradeProgress in
                var next = progress
                let handle = txn.unsafeHandle
                let cursor = try handle.cursor(old)
                var entry = try next.lastKey.map { try cursor.seek(atOrAfter: $0) } ?? cursor.first()
                if let lastKey = next.lastKey, let (key, _) = entry, key.elementsEqual(lastKey) {
                    entry = try cursor.next()
                }
                var copied = 0
                while let (key, value) = entry, copied < entriesPerCommit {
                    guard key.count > 9, key[key.count - 9] == 0, let version = Keys.readPosition(
                        UnsafeRawBufferPointer(rebasing: key[(key.count - 8)...])), value.count == 8,
                        let position = Keys.readPosition(value)
                    else {
                        throw LogError(.corrupt, "a format 1 stream entry is damaged: key of \(key.count) bytes")
                    }
                    let incident = Array(key[..<(key.count - 9)])
                    if version == 1 {
                        next.incident = incident
                        next.start = position
                    } else if incident != next.incident {
                        throw LogError(
                            .corrupt,
                            "the format 1 stream of \(String(decoding: incident, as: UTF8.self)) has no version 1")
                    }
                    try handle.put(db.streams, key: Keys.stream(start: next.start, version: Int64(version)), value: value)
                    next.lastKey = Array(key)
                    copied += 1
                    entry = try cursor.next()
                }
                if entry == nil {
                    try handle.drop(old, delete: true)
                    try handle.put(db.meta, key: Keys.format, value: Array(EventLog.format2Tag.utf8))
                    next.done = true
                }
                return next
            }
        }
    }
}

extension EventLog {
    /// Upgrades a log of format 2, whose `incident-streams` values are positions alone, to format 3, where each
    /// is `position ‖` the event's ``StreamSummary``. The entries are rewritten in key order, in transactions of
    /// `upgradeEntriesPerCommit`, each summary made from its stored event (read the rebuild's fast way, or
    /// decoded whole when that does not take it); the last transaction writes the new format tag. An entry
    /// that already has a summary is left as it is, so a crash midway leaves a log the next start upgrades from
    /// where it stopped.
    func upgradeFromFormat2() throws {
        try makeStreamSummaries(everyEntry: false, tag: EventLog.format3Tag)
    }

    /// Upgrades a log of format 3, 4 or 5 to format 6. Format 4 added `city-dates`, each city's index of the dates
    /// of the incidents it counts (``IncidentDate``); format 5 kept there each city's index of every incident
    /// reported in it too; format 6 keeps each incident there once, a counted one's id beside its date and the
    /// others in its city's list of the incidents it does not date (``Keys/cityIncident(cityId:position:into:)``).
    /// The database is opened (made, empty) with the log; this empties it and writes the new format tag, in one
    /// transaction. The entries are then made, and every city's first and last incident dates with them, by the
    /// rebuild of the projections that follows at once (``checkFormat()``, which says why): no incidentd of format
    /// 3 to 5 wrote projections of version 9 or later, so one cut short before it ends rebuilds them at the next
    /// start.
    func upgradeCityDates() throws {
        try environment.write { txn in
            try txn.drop(db.cityDates, delete: false)
            try txn.put(db.meta, key: Keys.format, value: Array(EventLog.formatTag.utf8))
        }
    }

    /// Makes every stream summary again from its event, which the hash chain covers: what to do when one is
    /// found damaged, and before a rebuild an operator asks for (`incidentd --rebuild-projections`), so that the
    /// projections it writes rest on the events alone. About four seconds per million events here.
    public func rederiveStreamSummaries() throws {
        try makeStreamSummaries(everyEntry: true, tag: EventLog.formatTag)
    }

    /// Deletes the `incident-streams` and `event-ids` entries that name a position past the head, `head`: those
    /// of events cut off the log behind incidentd's back, which a rebuild an operator asks for accepts as it is.
    /// Left in place, their stream summaries stop that rebuild, and an event appended again with one of their ids
    /// is refused as a duplicate (or taken for a retry) of an event the log no longer holds. The entries are found
    /// in a read transaction and deleted in transactions of `upgradeEntriesPerCommit`; a crash midway leaves the
    /// projections counting past the head, so the next start refuses again until the rebuild is asked again.
    /// Returns how many entries were deleted.
    func deleteEntriesPastHead(_ head: UInt64) throws -> Int {
        let entriesPerCommit = max(1, options.upgradeEntriesPerCommit)
        var deleted = 0
        for (database, name) in [(db.streams, "incident-streams"), (db.eventIds, "event-ids")] {
            try stopIfAsked(during: "while deleting the \(name) entries of events past the head")
            let stale = try environment.read { txn in
                var keys: [[UInt8]] = []
                try txn.forEach(database) { key, value in
                    if let position = Keys.readPosition(value), position > head { keys.append(Array(key)) }
                    return true
                }
                return keys
            }
            var start = 0
            while start < stale.count {
                let end = min(start + entriesPerCommit, stale.count)
                try environment.write { txn in
                    for key in stale[start..<end] { _ = try txn.delete(database, key: key) }
                }
                start = end
            }
            deleted += stale.count
        }
        return deleted
    }

    /// Writes the summary of each `incident-streams` entry that has none, or of every entry, then the format `tag`.
    private func makeStreamSummaries(everyEntry: Bool, tag: String) throws {
        let entriesPerCommit = max(1, options.upgradeEntriesPerCommit)
        var lastKey: [UInt8]?
        var done = false
        var made = 0
        options.onProgress?("making the stream summaries from the events")
        while !done {
            try stopIfAsked(during: "while making the stream summaries from the events, with \(made) made")
            // Each write may be run again after the map grows, so it starts from `lastKey` and returns the next.
            let written: Int
            (lastKey, done, written) = try environment.write { txn -> ([UInt8]?, Bool, Int) in
                let handle = txn.unsafeHandle
                var entries: [(key: [UInt8], position: UInt64)] = []
                var atEnd = false
                do {
                    let cursor = try handle.cursor(db.streams)
                    var entry = try lastKey.map { try cursor.seek(atOrAfter: $0) } ?? cursor.first()
                    if let lastKey, let (key, _) = entry, key.elementsEqual(lastKey) { entry = try cursor.next() }
                    while let (key, value) = entry, entries.count < entriesPerCommit {
                        guard key.count == 16, let position = Keys.readPosition(value) else {
                            throw LogError(.corrupt, "an incident-streams entry is damaged: key of \(key.count) bytes")
                        }
                        if everyEntry || value.count == 8 { entries.append((Array(key), position)) }
                        entry = try cursor.next()
                    }
                    atEnd = entry == nil
                }
                var value: [UInt8] = []
                for (key, position) in entries {
                    guard let stored = try handle.get(db.events, key: Keys.position(position)), stored.count > 32 else {
                        throw LogError(.corrupt, "event \(position), named by incident-streams, is missing")
                    }
                    value.removeAll(keepingCapacity: true)
                    value.append(contentsOf: Keys.position(position))
                    try StreamSummary.append(
                        ofStored: UnsafeRawBufferPointer(rebasing: stored[32...]), at: position, to: &value) { _, _, _ in }
                    try handle.put(db.streams, key: key, value: value)
                }
                if atEnd {
                    try handle.put(db.meta, key: Keys.format, value: Array(tag.utf8))
                    return (nil, true, entries.count)
                }
                return (entries.last?.key ?? lastKey, false, entries.count)
            }
            made += written
            options.onProgress?("making the stream summaries from the events: \(made) made\(done ? ", done" : "")")
        }
    }
}

/// Where an upgrade of the incident streams has got to, between its transactions.
private struct UpgradeProgress {
    /// The last old key copied; `nil` before the first.
    var lastKey: [UInt8]?
    /// The incident being copied and the position of its version 1.
    var incident: [UInt8] = []
    var start: UInt64 = 0
    var done = false
}
