import JindouModel
import JindouRouting

/// KV caches of finished sequences, kept so a later prompt that starts with the same tokens
/// (a system prompt, a chat's earlier turns, a repeated document) prefills only the rest.
///
/// Entries are keyed by 16-token blocks: each block's key hashes the whole prefix up to it,
/// so a lookup walks the prompt's blocks and stops at the first miss; the tokens are
/// compared before a hit counts. Keys also hold the request's experts-per-token (elastic K
/// changes every hidden state after the first MoE layer). A hit copies the prefix's rows
/// into the new sequence's own cache (caches stay contiguous per sequence; the copy costs
/// one read of the prefix, the prefill it replaces reads every weight). Entries count
/// against the scheduler's KV budget and the least recently used go first.
///
/// Not cached: prompts with images (the rows depend on pixels the tokens do not show).
/// At least one prompt token is always prefilled, for the logits of the first new token.
/// A sliding-window layer reuses a prefix only while the entry still holds that prefix's
/// window.
struct PrefixCache {
    static let blockTokens = 16

    struct Entry {
        let tokens: [Int]
        let expertsPerToken: ExpertsPerToken
        let cache: KVCache
        var lastUse: Int
        var bytes: Int { cache.allocatedBytes }
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
    private(set) var bytes = 0

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
        bytes += cache.allocatedBytes
        for key in Self.blockKeys(tokens, blocks: blocks, expertsPerToken: expertsPerToken) { index[key, default: []].insert(id) }
    }

    private mutating func remove(_ id: Int) {
        guard let entry = entries.removeValue(forKey: id) else { return }
        bytes -= entry.bytes
        for key in Self.blockKeys(entry.tokens, blocks: entry.tokens.count / Self.blockTokens, expertsPerToken: entry.expertsPerToken) {
            index[key]?.remove(id)
            if index[key]?.isEmpty ?? false { index[key] = nil }
        }
    }

    /// Drops least recently used entries until at most `limit` bytes are held.
    mutating func evict(toAtMost limit: Int) {
        while bytes > limit, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key { remove(oldest) }
    }

    /// Copies the longest cached block prefix of `prompt` (leaving at least one token to
    /// prefill) into `cache`; returns how many tokens it holds now (0: a miss).
    mutating func reuse(prompt: [Int], expertsPerToken: ExpertsPerToken, into cache: KVCache) -> Int {
        let usable = (prompt.count - 1) / Self.blockTokens
        guard usable > 0, !entries.isEmpty else { return 0 }
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
        cache.copyPrefix(of: entry.cache, length: length)
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
