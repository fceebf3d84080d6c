import Foundation
import Synchronization

/// Errors loading a tokenizer, naming the file and what is unsupported or malformed.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    case missingFile(path: String)
    case malformed(path: String, reason: String)
    case unsupported(path: String, component: String, type: String)

    public var description: String {
        switch self {
        case .missingFile(let path): "missing tokenizer file: \(path)"
        case .malformed(let path, let reason): "\(path): \(reason)"
        case .unsupported(let path, let component, let type): "\(path): \(component) type '\(type)' is not supported"
        }
    }
}

/// A Hugging Face `tokenizer.json` byte-level BPE tokenizer (Qwen2/Qwen3, GLM4,
/// DeepSeek-V3 and GPT-2 style): added/special tokens, normalizer, pre-tokenizer regex
/// splits, byte-level BPE with merge ranks, template post-processing and the byte-level
/// decoder — producing the same ids as the `tokenizers` library.
public final class Tokenizer: Sendable {
    /// An added token (`added_tokens` in tokenizer.json).
    public struct AddedToken: Sendable {
        public let id: Int
        public let content: String
        public let special: Bool
        let leftStrip: Bool
        let rightStrip: Bool
    }

    enum Normalization: Sendable { case nfc, nfd, nfkc, nfkd }

    enum PreTokenizer: Sendable {
        /// Regex split; `isolated` keeps matches and gaps as separate pieces.
        case split(pattern: String, behavior: String, invert: Bool)
        case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
        case digits(individual: Bool)
        /// llama.cpp's `\p{AFMoE_digits}` (Trinity's `afmoe` pre-tokenizer,
        /// `unicode_regex_split_custom_afmoe`): each run of digits splits into groups of three
        /// counted from its end; the text before a run stays with the run's first group.
        case digitGroupsOfThree
    }

    public let vocabularySize: Int
    public let addedTokens: [AddedToken]
    let vocabulary: [String: Int]
    let tokens: [String?]
    /// (left id, right id) packed → (rank, merged id).
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    let normalizations: [Normalization]
    let preTokenizers: [PreTokenizer]
    let regexes: [Int: CompiledPattern]
    let ignoreMerges: Bool
    let addedByFirstScalar: [Unicode.Scalar: [AddedToken]]
    let prefixTokens: [Int]
    let suffixTokens: [Int]
    /// Set for a SentencePiece vocabulary (a GGUF `llama` tokenizer), which encodes and
    /// decodes its own way (`SentencePieceModel`); nil for byte-level BPE.
    let sentencePiece: SentencePieceModel?
    private let cache = Mutex<[String: [Int]]>([:])

    /// GPT-2's pre-tokenizer pattern, used by ByteLevel with `use_regex: true`.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// Loads `tokenizer.json`.
    public convenience init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw TokenizerError.missingFile(path: path) }
        try self.init(json: data, path: path)
    }

    public convenience init(json data: Data, path: String = "tokenizer.json") throws {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError.malformed(path: path, reason: "not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.malformed(path: path, reason: "no 'model'") }
        let modelType = model["type"] as? String ?? "BPE"
        guard modelType == "BPE" else { throw TokenizerError.unsupported(path: path, component: "model", type: modelType) }
        if model["byte_fallback"] as? Bool == true {
            throw TokenizerError.unsupported(path: path, component: "BPE", type: "byte_fallback")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw TokenizerError.malformed(path: path, reason: "model has no 'vocab'") }
        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(vocab.count)
        for (token, id) in vocab {
            guard let id = (id as? NSNumber)?.intValue else { throw TokenizerError.malformed(path: path, reason: "vocab entry '\(token)' is not an id") }
            vocabulary[token] = id
        }
        var added: [AddedToken] = []
        for entry in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = (entry["id"] as? NSNumber)?.intValue, let content = entry["content"] as? String else {
                throw TokenizerError.malformed(path: path, reason: "added token without id or content")
            }
            added.append(AddedToken(id: id, content: content, special: entry["special"] as? Bool ?? false,
                                    leftStrip: entry["lstrip"] as? Bool ?? false, rightStrip: entry["rstrip"] as? Bool ?? false))
        }
        // Merges: "a b" strings or ["a", "b"] pairs.
        let merges: [[String]] = (model["merges"] as? [Any] ?? []).map { entry in
            if let text = entry as? String {
                return text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            }
            return entry as? [String] ?? []
        }

        var normalizations: [Normalization] = []
        func normalizer(_ object: [String: Any]?) throws {
            guard let object, let type = object["type"] as? String else { return }
            switch type {
            case "Sequence": for child in object["normalizers"] as? [[String: Any]] ?? [] { try normalizer(child) }
            case "NFC": normalizations.append(.nfc)
            case "NFD": normalizations.append(.nfd)
            case "NFKC": normalizations.append(.nfkc)
            case "NFKD": normalizations.append(.nfkd)
            default: throw TokenizerError.unsupported(path: path, component: "normalizer", type: type)
            }
        }
        try normalizer(root["normalizer"] as? [String: Any])

        var preTokenizers: [PreTokenizer] = []
        func preTokenizer(_ object: [String: Any]?) throws {
            guard let object, let type = object["type"] as? String else { return }
            switch type {
            case "Sequence": for child in object["pretokenizers"] as? [[String: Any]] ?? [] { try preTokenizer(child) }
            case "Split":
                let pattern = object["pattern"] as? [String: Any]
                let regex = (pattern?["Regex"] as? String) ?? (pattern?["String"] as? String).map(NSRegularExpression.escapedPattern(for:))
                guard let regex else { throw TokenizerError.malformed(path: path, reason: "Split pre-tokenizer without a pattern") }
                preTokenizers.append(.split(pattern: regex, behavior: object["behavior"] as? String ?? "Isolated",
                                            invert: object["invert"] as? Bool ?? false))
            case "ByteLevel":
                preTokenizers.append(.byteLevel(addPrefixSpace: object["add_prefix_space"] as? Bool ?? false,
                                                useRegex: object["use_regex"] as? Bool ?? true))
            case "Digits":
                preTokenizers.append(.digits(individual: object["individual_digits"] as? Bool ?? false))
            default:
                throw TokenizerError.unsupported(path: path, component: "pre_tokenizer", type: type)
            }
        }
        try preTokenizer(root["pre_tokenizer"] as? [String: Any])

        // Post-processor: template special tokens around a single sequence.
        var prefix: [Int] = [], suffix: [Int] = []
        func postProcessor(_ object: [String: Any]?) {
            guard let object, let type = object["type"] as? String else { return }
            if type == "Sequence" { for child in object["processors"] as? [[String: Any]] ?? [] { postProcessor(child) } }
            guard type == "TemplateProcessing", let single = object["single"] as? [[String: Any]] else { return }
            let specials = object["special_tokens"] as? [String: [String: Any]] ?? [:]
            var seenSequence = false
            for item in single {
                if item["Sequence"] != nil { seenSequence = true; continue }
                if let special = item["SpecialToken"] as? [String: Any], let name = special["id"] as? String {
                    let ids = (specials[name]?["ids"] as? [NSNumber])?.map(\.intValue) ?? vocabulary[name].map { [$0] } ?? []
                    if seenSequence { suffix += ids } else { prefix += ids }
                }
            }
        }
        postProcessor(root["post_processor"] as? [String: Any])
        try self.init(path: path, vocabulary: vocabulary, addedTokens: added, merges: merges, normalizations: normalizations,
                      preTokenizers: preTokenizers, ignoreMerges: model["ignore_merges"] as? Bool ?? false,
                      prefixTokens: prefix, suffixTokens: suffix)
    }

    /// The common part of every source: vocabulary, added tokens, merge pairs by rank and the
    /// pre-tokenization steps, checked and compiled.
    init(path: String, vocabulary: [String: Int], addedTokens added: [AddedToken], merges mergePairs: [[String]],
         normalizations: [Normalization], preTokenizers: [PreTokenizer], ignoreMerges: Bool, prefixTokens: [Int],
         suffixTokens: [Int], sentencePiece: SentencePieceModel? = nil) throws {
        let size = max(vocabulary.values.max() ?? -1, added.map(\.id).max() ?? -1) + 1
        var tokens = [String?](repeating: nil, count: size)
        for (token, id) in vocabulary { tokens[id] = token }
        for token in added { tokens[token.id] = token.content }
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        for (rank, pair) in mergePairs.enumerated() {
            guard pair.count == 2, let left = vocabulary[pair[0]], let right = vocabulary[pair[1]],
                  let merged = vocabulary[pair[0] + pair[1]] else {
                throw TokenizerError.malformed(path: path, reason: "merge \(rank) '\(pair.joined(separator: " "))' names tokens not in the vocabulary")
            }
            merges[UInt64(left) << 32 | UInt64(right)] = (Int32(rank), Int32(merged))
        }
        var regexes: [Int: CompiledPattern] = [:]
        for (index, step) in preTokenizers.enumerated() {
            let pattern: String
            switch step {
            case .split(let p, _, _): pattern = p
            case .byteLevel(_, true): pattern = Self.gpt2Pattern
            case .digits(true): pattern = #"\p{N}"#
            case .digits(false): pattern = #"\p{N}+"#
            default: continue
            }
            do {
                regexes[index] = CompiledPattern(regex: try Regex(pattern).matchingSemantics(.unicodeScalar))
            } catch {
                throw TokenizerError.malformed(path: path, reason: "pre-tokenizer regex does not compile: \(error)")
            }
        }

        self.vocabularySize = size
        self.addedTokens = added
        self.vocabulary = vocabulary
        self.tokens = tokens
        self.merges = merges
        self.normalizations = normalizations
        self.preTokenizers = preTokenizers
        self.regexes = regexes
        self.ignoreMerges = ignoreMerges
        self.addedByFirstScalar = Dictionary(grouping: added.filter { !$0.content.isEmpty }) { $0.content.unicodeScalars.first! }
            .mapValues { $0.sorted { $0.content.unicodeScalars.count > $1.content.unicodeScalars.count } }
        self.prefixTokens = prefixTokens
        self.suffixTokens = suffixTokens
        self.sentencePiece = sentencePiece
    }

    // MARK: - Lookup

    /// The id of a token string (vocabulary or added token).
    public func id(of token: String) -> Int? {
        vocabulary[token] ?? addedTokens.first { $0.content == token }?.id
    }

    /// The string of a token id, as stored (byte-level for vocabulary tokens).
    public func token(_ id: Int) -> String? { id >= 0 && id < tokens.count ? tokens[id] : nil }

    /// Whether `id` is an added token marked special (skipped when decoding with `skipSpecialTokens`).
    public func isSpecial(_ id: Int) -> Bool { addedTokens.contains { $0.id == id && $0.special } }

    func isAdded(_ id: Int) -> Bool { addedTokens.contains { $0.id == id } }

    // MARK: - Encoding

    /// Token ids of `text`. With `addSpecialTokens`, the post-processor's template tokens
    /// (e.g. a BOS) are added, as `tokenizers` does by default.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        var ids: [Int] = addSpecialTokens ? prefixTokens : []
        var afterSpecial = true
        for segment in splitOnAddedTokens(text) {
            switch segment {
            case .added(let id):
                ids.append(id)
                afterSpecial = true
            case .text(let piece):
                if let sentencePiece {
                    ids += sentencePiece.encode(piece, afterSpecial: afterSpecial)
                } else {
                    ids += encodeOrdinary(piece)
                }
                afterSpecial = false
            }
        }
        if addSpecialTokens { ids += suffixTokens }
        return ids
    }

    enum Segment { case text(Substring), added(Int) }

    /// Splits out added tokens (longest match first at each position), honouring their
    /// lstrip/rstrip (which absorb neighbouring whitespace).
    func splitOnAddedTokens(_ text: String) -> [Segment] {
        if addedTokens.isEmpty { return [.text(text[...])] }
        var segments: [Segment] = []
        let scalars = text.unicodeScalars
        var start = scalars.startIndex
        var position = start
        while position < scalars.endIndex {
            var matched: (AddedToken, String.UnicodeScalarView.Index)?
            if let candidates = addedByFirstScalar[scalars[position]] {
                for token in candidates where scalars[position...].starts(with: token.content.unicodeScalars) {
                    matched = (token, scalars.index(position, offsetBy: token.content.unicodeScalars.count))
                    break
                }
            }
            guard let (token, end) = matched else {
                position = scalars.index(after: position)
                continue
            }
            var textEnd = position
            if token.leftStrip {
                while textEnd > start, scalars[scalars.index(before: textEnd)].properties.isWhitespace { textEnd = scalars.index(before: textEnd) }
            }
            if textEnd > start { segments.append(.text(Substring(scalars[start..<textEnd]))) }
            segments.append(.added(token.id))
            var next = end
            if token.rightStrip {
                while next < scalars.endIndex, scalars[next].properties.isWhitespace { next = scalars.index(after: next) }
            }
            start = next
            position = next
        }
        if start < scalars.endIndex { segments.append(.text(Substring(scalars[start...]))) }
        return segments
    }

    func normalize(_ text: Substring) -> String {
        var result = String(text)
        for step in normalizations {
            switch step {
            case .nfc: result = result.precomposedStringWithCanonicalMapping
            case .nfd: result = result.decomposedStringWithCanonicalMapping
            case .nfkc: result = result.precomposedStringWithCompatibilityMapping
            case .nfkd: result = result.decomposedStringWithCompatibilityMapping
            }
        }
        return result
    }

    /// Pre-tokenizes then BPE-encodes text without added tokens.
    func encodeOrdinary(_ text: Substring) -> [Int] {
        let normalized = normalize(text)
        var pieces: [Substring] = [normalized[...]]
        var byteLevelDone = false
        for (index, step) in preTokenizers.enumerated() {
            switch step {
            case .split(_, let behavior, let invert):
                pieces = pieces.flatMap { split($0, regex: regexes[index]!, behavior: behavior, invert: invert) }
            case .digits:
                pieces = pieces.flatMap { split($0, regex: regexes[index]!, behavior: "Isolated", invert: false) }
            case .digitGroupsOfThree:
                pieces = pieces.flatMap(Self.digitGroupsOfThree)
            case .byteLevel(let addPrefixSpace, let useRegex):
                if useRegex { pieces = pieces.flatMap { split($0, regex: regexes[index]!, behavior: "Isolated", invert: false) } }
                if addPrefixSpace, let first = pieces.first, !first.hasPrefix(" ") { pieces[0] = Substring(" " + first) }
                pieces = pieces.map { Substring(ByteLevel.encode($0)) }
                byteLevelDone = true
            }
        }
        if !byteLevelDone { pieces = pieces.map { Substring(ByteLevel.encode($0)) } }
        var ids: [Int] = []
        for piece in pieces where !piece.isEmpty { ids += bpe(String(piece)) }
        return ids
    }

    /// `PreTokenizer.digitGroupsOfThree` on one piece, code point by code point as llama.cpp
    /// does: "ab12345c" → "ab12", "345", "c"; "x123" → "x123".
    static func digitGroupsOfThree(_ text: Substring) -> [Substring] {
        let scalars = text.unicodeScalars
        func isNumber(_ s: Unicode.Scalar) -> Bool {
            switch s.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: true
            default: false
            }
        }
        var pieces: [Substring] = []
        var emitted = scalars.startIndex
        func emit(through end: String.UnicodeScalarView.Index) {
            if end > emitted { pieces.append(Substring(scalars[emitted..<end])) }
            emitted = end
        }
        var position = scalars.startIndex
        while position < scalars.endIndex {
            guard isNumber(scalars[position]) else {
                position = scalars.index(after: position)
                continue
            }
            var run = 0
            var current = position
            while position < scalars.endIndex, isNumber(scalars[position]) {
                run += 1
                position = scalars.index(after: position)
            }
            if run % 3 > 0 {
                current = scalars.index(current, offsetBy: run % 3)
                emit(through: current)
            }
            while current < position {
                current = scalars.index(current, offsetBy: 3)
                emit(through: current)
            }
        }
        emit(through: scalars.endIndex)
        return pieces
    }

    /// `tokenizers`' Split: matches and the gaps between them become pieces (Isolated),
    /// gaps only (Removed), or matches joined to a neighbour.
    func split(_ text: Substring, regex pattern: CompiledPattern, behavior: String, invert: Bool) -> [Substring] {
        let regex = pattern.regex
        var pieces: [(Substring, Bool)] = []  // (piece, isMatch)
        var last = text.startIndex
        for match in text.matches(of: regex) where !match.range.isEmpty {
            if match.range.lowerBound > last { pieces.append((text[last..<match.range.lowerBound], false)) }
            pieces.append((text[match.range], true))
            last = match.range.upperBound
        }
        if last < text.endIndex { pieces.append((text[last...], false)) }
        if invert { pieces = pieces.map { ($0.0, !$0.1) } }
        switch behavior {
        case "Removed":
            return pieces.filter { !$0.1 }.map(\.0)
        case "MergedWithPrevious":
            var result: [Substring] = []
            for (piece, isMatch) in pieces {
                if isMatch, let previous = result.last {
                    result[result.count - 1] = text[previous.startIndex..<piece.endIndex]
                } else {
                    result.append(piece)
                }
            }
            return result
        case "MergedWithNext":
            var result: [Substring] = []
            var pending: Substring.Index?
            for (piece, isMatch) in pieces {
                if isMatch {
                    pending = pending ?? piece.startIndex
                } else {
                    result.append(text[(pending ?? piece.startIndex)..<piece.endIndex])
                    pending = nil
                }
            }
            if let pending { result.append(text[pending...]) }
            return result
        default:  // Isolated (and Contiguous, treated alike)
            return pieces.map(\.0)
        }
    }

    /// Byte-level BPE of one piece: repeatedly merge the adjacent pair with the lowest rank.
    func bpe(_ piece: String) -> [Int] {
        if let cached = cache.withLock({ $0[piece] }) { return cached }
        if ignoreMerges, let id = vocabulary[piece] { return [id] }
        var symbols: [Int] = piece.unicodeScalars.compactMap { vocabulary[String($0)] }
        while symbols.count > 1 {
            var best: (rank: Int32, index: Int, merged: Int32)?
            for i in 0..<(symbols.count - 1) {
                if let merge = merges[UInt64(symbols[i]) << 32 | UInt64(symbols[i + 1])], merge.rank < (best?.rank ?? .max) {
                    best = (merge.rank, i, merge.merged)
                }
            }
            guard let best else { break }
            // Merge every occurrence of this pair, left to right.
            let left = symbols[best.index], right = symbols[best.index + 1]
            var merged: [Int] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == left && symbols[i + 1] == right {
                    merged.append(Int(best.merged))
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        cache.withLock { cache in
            if cache.count > 100_000 { cache.removeAll(keepingCapacity: true) }
            cache[piece] = symbols
        }
        return symbols
    }

    // MARK: - Decoding

    /// The text of `ids` (invalid UTF-8 becomes U+FFFD, as `tokenizers` does).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var bytes = bytes(ids, skipSpecialTokens: skipSpecialTokens)
        // SentencePiece: the space put in front of the text is not part of it.
        if sentencePiece?.addSpacePrefix == true, bytes.first == 0x20 { bytes.removeFirst() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The UTF-8 bytes of `ids`.
    public func bytes(_ ids: [Int], skipSpecialTokens: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens && isSpecial(id) { continue }
            guard let token = token(id) else { continue }
            if let sentencePiece, !isAdded(id) {
                bytes += sentencePiece.bytes(of: id, text: token)
            } else if sentencePiece != nil {
                bytes += Array(token.utf8)
            } else {
                bytes += ByteLevel.bytes(of: token)
            }
        }
        return bytes
    }
}

/// A compiled pre-tokenizer regex.
///
/// `@unchecked Sendable`: a `Regex` is an immutable value and matching never mutates it;
/// it is not `Sendable` only because `AnyRegexOutput` may carry arbitrary capture types,
/// and we read nothing but match ranges.
struct CompiledPattern: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>
}

/// Turns a stream of token ids into text pieces that never split a UTF-8 sequence.
public struct StreamingDetokenizer: Sendable {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text this token completes (may be empty while a character is incomplete).
    public mutating func append(_ id: Int) -> String {
        pending += tokenizer.bytes([id], skipSpecialTokens: skipSpecialTokens)
        let complete = Self.completePrefixLength(pending)
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is left at the end (an incomplete sequence becomes U+FFFD).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a UTF-8 sequence.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var end = bytes.count
        // Look back at most 3 bytes for a lead byte whose sequence is not complete.
        var i = bytes.count - 1
        while i >= 0 && i >= bytes.count - 4 {
            let byte = bytes[i]
            if byte & 0xC0 != 0x80 {  // a lead (or ASCII) byte
                let length = byte < 0x80 ? 1 : byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
                if i + length > bytes.count { end = i }
                break
            }
            i -= 1
        }
        return end
    }
}
