import JindouModel

/// The vocabulary as a byte trie, so one walk from a matcher's state finds every token whose
/// bytes keep the text valid: a rejected byte prunes all tokens under it. Built once per
/// tokenizer; special tokens (empty bytes) are not in it.
public final class TokenVocabulary: Sendable {
    struct Node: Sendable {
        var children: [(byte: UInt8, node: Int32)] = []
        var tokens: [Int32] = []
    }

    let nodes: [Node]
    public let bytes: [[UInt8]]
    public var nodeCount: Int { nodes.count }

    /// `bytes[id]`: token id's bytes as they appear in text (empty for special tokens).
    public init(bytes: [[UInt8]]) {
        self.bytes = bytes
        var children: [[UInt8: Int32]] = [[:]]
        var tokens: [[Int32]] = [[]]
        for (id, token) in bytes.enumerated() where !token.isEmpty {
            var node = 0
            for b in token {
                if let next = children[node][b] {
                    node = Int(next)
                } else {
                    children.append([:])
                    tokens.append([])
                    children[node][b] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            tokens[node].append(Int32(id))
        }
        nodes = zip(children, tokens).map { c, t in Node(children: c.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, tokens: t) }
    }

    /// Calls `allow` with every token the matcher accepts whole.
    func walk(from matcher: JSONSchemaMatcher, node: Int = 0, _ allow: (Int32) -> Void) {
        for (byte, child) in nodes[node].children {
            var next = matcher
            guard next.feed(byte) else { continue }
            let c = Int(child)
            for token in nodes[c].tokens { allow(token) }
            if !nodes[c].children.isEmpty { walk(from: next, node: c, allow) }
        }
    }
}

/// Token masks already computed for a matcher state (one sequence's; states recur inside
/// strings and between values), a bounded number kept.
final class MaskMemo: @unchecked Sendable {
    // @unchecked: a constraint belongs to one sequence, which is in one step at a time.
    var masks: [JSONSchemaMatcher: [Bool]] = [:]
    static let capacity = 256
}

/// Structured output for one sequence: only tokens that keep its text a prefix of a value of
/// the schema, and the end tokens once the value is whole.
public struct JSONConstraint: TokenConstraint {
    let vocabulary: TokenVocabulary
    public private(set) var matcher: JSONSchemaMatcher
    let endTokens: Set<Int>
    private let memo = MaskMemo()

    public init(grammar: JSONSchemaGrammar, vocabulary: TokenVocabulary, endTokens: Set<Int>) {
        self.vocabulary = vocabulary
        matcher = JSONSchemaMatcher(grammar)
        self.endTokens = endTokens
    }

    public func allowedTokens(vocabularySize: Int) -> [Bool] {
        if let known = memo.masks[matcher], known.count == vocabularySize { return known }
        let mask = computeMask(vocabularySize: vocabularySize)
        if memo.masks.count >= MaskMemo.capacity { memo.masks.removeAll(keepingCapacity: true) }
        memo.masks[matcher] = mask
        return mask
    }

    /// The mask computed afresh (what `allowedTokens` does on a state it has not seen).
    public func computeMask(vocabularySize: Int) -> [Bool] {
        var mask = [Bool](repeating: false, count: vocabularySize)
        var any = false
        vocabulary.walk(from: matcher) { token in
            if Int(token) < vocabularySize {
                mask[Int(token)] = true
                any = true
            }
        }
        // A whole value may end; a dead end (cannot happen for a satisfiable schema) ends too.
        if matcher.isComplete || !any {
            for token in endTokens where token < vocabularySize { mask[token] = true }
        }
        return mask
    }

    public mutating func accept(_ token: Int) {
        guard !endTokens.contains(token), token < vocabulary.bytes.count else { return }
        _ = matcher.feed(vocabulary.bytes[token])
    }
}
