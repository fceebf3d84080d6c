import JindouModel
import JindouRouting

/// KV caches of finished sequences, kept so a later prompt that starts with the same tokens
/// (a system prompt, a chat's earlier turns, a repeated document) prefills only the rest.
///
/// Entries are keyed by 16-token blocks: each block's key hashes the whole prefix up to it,
/// so a lookup walks the prompt's blocks and stops at the first miss; the tokens are
/// compared before a hit counts. Keys also hold the request's experts-per-token (elastic K
/// changes every hidden state after the first MoE layer). A hit shares the prefix with the
/// new sequence copy-on-write (`KVCache.sharePrefix`: the prefix's whole pages are mapped
/// from the stores that hold them, only the rows of its last partial page and of sliding
/// layers are copied), so any number of running sequences read one copy of a common system
/// prompt or conversation; caches without a mapping get the rows copied. Entries count
/// against the scheduler's KV budget, each store once while anything maps it (an entry
/// evicted while running sequences read its pages stays counted until they finish), and
/// the least recently used go first.
///
/// Not cached: prompts with images (the rows depend on pixels the tokens do not show).
/// At least one prompt token is always prefilled, for the logits of the first new token.
/// A sliding-window layer reuses a prefix only while the entry still holds that prefix's
/// window. A cache with a recurrent state (linear attention) reuses only a whole entry that the
/// prompt extends — a chat's next turn after the previous answer — since its state stands for
/// the entry's full length; the state is copied with the rows.
struct PrefixCache {
    static let blockTokens = 16
    /// Most entries kept (each holds a file descriptor for its mapped rows), least recently
    /// used first beyond it.
    static let maximumEntries = 512

    struct Entry {
        let tokens: [Int]
        let expertsPerToken: ExpertsPerToken
        let cache: KVCache
        var lastUse: Int
    }

    struct Key: Hashable {
        let prefix: Int  // hash of tokens[0 ..< blocks × 16]
        let blocks: Int
        let expertsPerToken: ExpertsPerToken
    }

    private var entries: [Int: Entry] = [:]
    private var index: [Key: Set<Int>] = [:]
    private var nextID = 0
    private var clock = 0

    var isEmpty: Bool { entries.isEmpty }

    static func blockKeys(_ tokens: [Int], blocks: Int, expertsPerToken: ExpertsPerToken) -> [Key] {
        var hasher = Hasher()
        var keys: [Key] = []
        for b in 0..<blocks {
            for t in tokens[(b * blockTokens)..<((b + 1) * blockTokens)] { hasher.combine(t) }
            var copy = hasher
            copy.combine(b)
            keys.append(Key(prefix: copy.finalize(), blocks: b + 1, expertsPerToken: expertsPerToken))
        }
        return keys
    }

    /// Keeps a finished sequence's cache (its first `cache.length` tokens).
    mutating func insert(tokens: [Int], expertsPerToken: ExpertsPerToken, cache: KVCache) {
        let blocks = cache.length / Self.blockTokens
        guard blocks > 0 else { return }
        let tokens = Array(tokens.prefix(cache.length))
        // An entry that this one extends (or equals) is redundant.
        for (id, entry) in entries where entry.expertsPerToken == expertsPerToken && entry.tokens.count <= tokens.count
            && tokens.starts(with: entry.tokens) {
            remove(id)
        }
        let id = nextID
        nextID += 1
        clock += 1
        entries[id] = Entry(tokens: tokens, expertsPerToken: expertsPerToken, cache: cache, lastUse: clock)
        // Finished: its own store holds what it wrote, for whoever maps it later.
        cache.ownRowStore?.bytes = cache.allocatedBytes
        for key in Self.blockKeys(tokens, blocks: blocks, expertsPerToken: expertsPerToken) { index[key, default: []].insert(id) }
        while entries.count > Self.maximumEntries, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key { remove(oldest) }
    }

    private mutating func remove(_ id: Int) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        for key in Self.blockKeys(entry.tokens, blocks: entry.tokens.count / Self.blockTokens, expertsPerToken: entry.expertsPerToken) {
            index[key]?.remove(id)
            if index[key]?.isEmpty ?? false { index[key] = nil }
        }
    }

    /// The memory kept prefixes hold: every entry's cache (its heap rows and its own store)
    /// and every store an entry or a running sequence borrows from, each store once.
    func bytes(running: [KVCache]) -> Int {
        // An entry's own store is in its allocatedBytes, whoever else maps it.
        var seen = Set(entries.values.compactMap { $0.cache.ownRowStore.map(ObjectIdentifier.init) })
        var total = entries.values.reduce(0) { $0 + $1.cache.allocatedBytes }
        func count(_ store: KVRowStore) {
            if seen.insert(ObjectIdentifier(store)).inserted { total += store.bytes }
        }
        for entry in entries.values { entry.cache.borrowedRowStores.forEach(count) }
        for cache in running { cache.borrowedRowStores.forEach(count) }
        return total
    }

    /// What eviction cannot free while `running` run: the stores they borrow from.
    func pinnedBytes(running: [KVCache]) -> Int {
        var seen = Set<ObjectIdentifier>(), total = 0
        for cache in running {
            for store in cache.borrowedRowStores where seen.insert(ObjectIdentifier(store)).inserted { total += store.bytes }
        }
        return total
    }

    /// Drops least recently used entries until at most `limit` bytes are held (or none is left).
    mutating func evict(toAtMost limit: Int, running: [KVCache]) {
        while bytes(running: running) > limit, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key { remove(oldest) }
    }

    /// Shares (or copies) the longest cached block prefix of `prompt` (leaving at least one
    /// token to prefill) into `cache`; returns how many tokens it holds now (0: a miss).
    mutating func reuse(prompt: [Int], expertsPerToken: ExpertsPerToken, into cache: KVCache) -> Int {
        let usable = (prompt.count - 1) / Self.blockTokens
        guard usable > 0, !entries.isEmpty else { return 0 }
        if cache.stateWidths.contains(where: { $0 > 0 }) {
            let whole = entries.filter { $0.value.expertsPerToken == expertsPerToken && $0.value.tokens.count < prompt.count
                && prompt.starts(with: $0.value.tokens) }
            guard let (id, entry) = whole.max(by: { $0.value.tokens.count < $1.value.tokens.count }) else { return 0 }
            cache.sharePrefix(of: entry.cache, length: entry.tokens.count)
            clock += 1
            entries[id]?.lastUse = clock
            return entry.tokens.count
        }
        var best: (id: Int, blocks: Int)?
        for key in Self.blockKeys(prompt, blocks: usable, expertsPerToken: expertsPerToken) {
            guard let ids = index[key] else { break }
            let length = key.blocks * Self.blockTokens
            let match = ids.first { id in
                guard let entry = entries[id] else { return false }
                return entry.tokens.count >= length && entry.tokens[..<length].elementsEqual(prompt[..<length])
                    && Self.holdsWindows(entry.cache, length: length)
            }
            guard let match else { break }
            best = (match, key.blocks)
        }
        guard let best, let entry = entries[best.id] else { return 0 }
        let length = best.blocks * Self.blockTokens
        cache.sharePrefix(of: entry.cache, length: length)
        clock += 1
        entries[best.id]?.lastUse = clock
        return length
    }

    /// Whether every sliding layer of `cache` still holds the window before `length`.
    static func holdsWindows(_ cache: KVCache, length: Int) -> Bool {
        (0..<cache.layerCount).allSatisfy { l in
            guard let window = cache.windows[l] else { return true }
            return cache.firstKeptPosition(layer: l) <= max(0, length - (window - 1))
        }
    }
}
