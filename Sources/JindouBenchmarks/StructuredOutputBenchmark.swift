import Foundation
import JindouGrammar
import JindouModel
import JindouTemplates

/// The cost of constrained decoding per generated token: computing one sequence's token mask
/// (a walk of the vocabulary's byte trie from its matcher state) for vocabularies of real
/// models' sizes. The vocabulary is synthetic (byte strings with the length and character
/// mix of a byte-level BPE: mostly lower-case pieces with a leading space, punctuation,
/// digits, JSON's brackets and quotes); the walk follows a tool-call schema, each step taking
/// a random allowed token, and times the mask of every step, computed afresh and as the
/// constraint serves it (states that recur reuse their mask).
public struct StructuredOutputBenchmark: Sendable {
    public struct Options: Sendable {
        public var vocabularySizes: [Int]
        public var steps: Int
        public init(vocabularySizes: [Int], steps: Int = 60) {
            self.vocabularySizes = vocabularySizes
            self.steps = steps
        }
    }

    public struct Row: Codable, Sendable {
        public var vocabularySize: Int
        public var trieNodes: Int
        public var steps: Int
        public var freshMilliseconds: Double
        public var servedMilliseconds: Double
    }

    public struct Report: Codable, Sendable {
        public var rows: [Row]
        public var markdown: String {
            var lines = [
                "Milliseconds to compute one sequence's token mask per generated token (mean over a constrained walk through a tool-call schema), synthetic byte-level vocabularies, one thread; \"served\" is what the constraint costs with its memo of recurring states.",
                "", "| vocabulary | trie nodes | steps | fresh mask | served |", "|---|---|---|---|---|",
            ]
            for r in rows {
                lines.append("| \(r.vocabularySize) | \(r.trieNodes) | \(r.steps) | \(String(format: "%.2f", r.freshMilliseconds)) ms | \(String(format: "%.2f", r.servedMilliseconds)) ms |")
            }
            return lines.joined(separator: "\n")
        }
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    static let schema = #"{"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}, "days": {"type": "integer"}, "unit": {"enum": ["celsius", "fahrenheit"]}, "notes": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}, "required": ["city", "days", "unit"], "additionalProperties": false}"#

    /// A vocabulary of `size` distinct byte strings shaped like a byte-level BPE's.
    static func vocabulary(size: Int, seed: UInt64) -> [[UInt8]] {
        var generator = SplitMix64(seed: seed)
        func next() -> UInt64 { generator.next() }
        let letters = Array("etaoinshrdlcumwfgypbvkjxqz".utf8)
        let others = Array("0123456789.,:;!?-_()[]{}\"'/\\<>=+*&#@%$\n\t".utf8)
        var tokens = Set<[UInt8]>()
        var result: [[UInt8]] = (0..<256).map { [UInt8($0)] }  // every byte, as byte-level BPEs have
        tokens.formUnion(result)
        while result.count < size {
            let length = 1 + Int(next() % 9)
            var token: [UInt8] = next() % 2 == 0 ? [0x20] : []
            for _ in 0..<length {
                let r = next() % 10
                token.append(r < 8 ? letters[Int(next() % UInt64(min(letters.count, 8 + Int(next() % 19))))] : others[Int(next() % UInt64(others.count))])
            }
            if tokens.insert(token).inserted { result.append(token) }
        }
        return result
    }

    public func run(log: @escaping @Sendable (String) -> Void) throws -> Report {
        let grammar = try JSONSchemaGrammar(schema: try JSONText.parse(Data(Self.schema.utf8)))
        var rows: [Row] = []
        for size in options.vocabularySizes {
            let bytes = Self.vocabulary(size: size, seed: UInt64(size))
            let vocabulary = TokenVocabulary(bytes: bytes)
            let end = size
            var constraint = JSONConstraint(grammar: grammar, vocabulary: vocabulary, endTokens: [end])
            var generator = SplitMix64(seed: 7)
            var fresh = 0.0, served = 0.0, steps = 0
            for _ in 0..<options.steps {
                let start = ContinuousClock.now
                let mask = constraint.computeMask(vocabularySize: size + 1)
                let middle = ContinuousClock.now
                _ = constraint.allowedTokens(vocabularySize: size + 1)
                let done = ContinuousClock.now
                fresh += Self.milliseconds(middle - start)
                served += Self.milliseconds(done - middle)
                steps += 1
                let allowed = mask.indices.filter { mask[$0] }
                guard !allowed.isEmpty else { break }
                let token = allowed[Int(generator.next() % UInt64(allowed.count))]
                if token == end { constraint = JSONConstraint(grammar: grammar, vocabulary: vocabulary, endTokens: [end]); continue }
                constraint.accept(token)
            }
            rows.append(Row(vocabularySize: size, trieNodes: vocabulary.nodeCount, steps: steps,
                            freshMilliseconds: fresh / Double(steps), servedMilliseconds: served / Double(steps)))
            log("vocabulary \(size): fresh \(String(format: "%.2f", fresh / Double(steps))) ms, served \(String(format: "%.2f", served / Double(steps))) ms per step")
        }
        return Report(rows: rows)
    }

    static func milliseconds(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
}
