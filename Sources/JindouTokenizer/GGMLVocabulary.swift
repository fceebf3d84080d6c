import Foundation

/// llama.cpp's tokenizer as a GGUF file stores it (`tokenizer.ggml.*`, written by
/// convert_hf_to_gguf.py `_set_vocab_gpt2` and gguf-py's `SpecialVocab`), as plain values.
public struct GGMLVocabulary: Sendable, Equatable {
    /// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
    public enum TokenType: Int32, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// `tokenizer.ggml.model`: Jindou reads `gpt2` (byte-level BPE) and `llama` (SentencePiece).
    public var model: String
    /// `tokenizer.ggml.pre`: llama.cpp's name for the pre-tokenizer.
    public var pre: String?
    /// Byte-level token strings, by id.
    public var tokens: [String]
    public var tokenTypes: [Int32]
    /// "left right" merges by rank (a space inside a token is written as U+0120).
    public var merges: [String]
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var addBOS: Bool
    public var addEOS: Bool
    public var unknownTokenID: Int?
    public var paddingTokenID: Int?
    /// `tokenizer.ggml.scores` (SentencePiece: merge priority of each piece).
    public var scores: [Float] = []
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece; llama.cpp's default: true).
    public var addSpacePrefix = true
    /// Whether the source said anything about adding BOS/EOS (the converter writes
    /// `add_bos_token`/`add_eos_token` only then).
    public var hasAddBOS = false
    public var hasAddEOS = false

    public init(model: String, pre: String?, tokens: [String], tokenTypes: [Int32], merges: [String], bosTokenID: Int? = nil,
                eosTokenID: Int? = nil, addBOS: Bool = false, addEOS: Bool = false) {
        self.model = model
        self.pre = pre
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.merges = merges
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.addBOS = addBOS
        self.addEOS = addEOS
    }

    /// The normaliser, pre-tokenizer and regex of each `tokenizer.ggml.pre` Jindou supports: the
    /// pipelines of the families' own tokenizer.json files (NFC, a regex split, byte-level
    /// without its own regex), whose regexes llama.cpp's src/llama-vocab.cpp transcribes for
    /// the same names. Merges are applied as tokenizer.json says (`ignore_merges: false`), so
    /// ids equal the `tokenizers` library's.
    static let preTokenizerPatterns: [String: String] = [
        // LLAMA_VOCAB_PRE_TYPE_QWEN2 (Qwen2, Qwen2.5, Qwen3, Qwen3-MoE).
        "qwen2": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        // LLAMA_VOCAB_PRE_TYPE_QWEN35 (Qwen3.5: letters with their marks, transformers' Qwen3_5Tokenizer).
        "qwen35": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        // LLAMA_VOCAB_PRE_TYPE_CHATGLM4 (GLM-4, GLM-4.5/4.6 MoE).
        "glm4": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
    ]

    /// Pre-tokenizers that are a sequence of Split regexes without a normaliser (the whole
    /// pipeline of their tokenizer.json: each Split isolates its matches within the pieces of the
    /// one before, then byte-level without a regex).
    static let preTokenizerSequences: [String: [String]] = [
        // LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM (DeepSeek-V3, V3.1, R1): numbers, CJK runs, words.
        // The CJK ranges and the CR/LF are the characters themselves, as in the real file.
        "deepseek-v3": [
            #"\p{N}{1,3}"#,
            "[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+",
            ##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^"## + "\r\n" + #"\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+["#
                + "\r\n" + #"]*|\s*["# + "\r\n" + #"]+|\s+(?!\S)|\s+"#,
        ],
        // LLAMA_VOCAB_PRE_TYPE_GPT4O / MINIMAX_M2 (gpt-oss's o200k_harmony, MiniMax-M2): the
        // tokenizer.json regex (tiktoken's o200k). llama.cpp runs an ASCII transcription of its
        // case classes (`[^a-z]` / `[^A-Z]` among letters), which splits alike except where a
        // non-ASCII letter is neither upper nor lower case next to a case change.
        "gpt-4o": [
            #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#
                + #"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#
                + #"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
        ],
    ]

    /// Pre-tokenizers of one Split regex without a normaliser.
    static let unnormalizedPatterns: [String: String] = [
        // LLAMA_VOCAB_PRE_TYPE_EXAONE_MOE (K-EXAONE): the regex of its tokenizer.json, which
        // llama.cpp quotes and runs with the case-insensitive contractions spelled out.
        "exaone-moe": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"#,
    ]

    /// LLAMA_VOCAB_PRE_TYPE_AFMOE (Arcee's Trinity): digits in groups of three from the end of
    /// each run (llama.cpp's custom `\p{AFMoE_digits}`), then runs of CJK, Thai, Lao, Khmer,
    /// Myanmar, Javanese, Hangul characters (llama.cpp's code points, as regex escapes: some are
    /// marks Swift's regex parser refuses as literals), then DeepSeek-V3's word regex; no
    /// normaliser.
    static let afmoeSplits: [String] = [
        "[\\u{4E00}-\\u{9FFF}\\u{3400}-\\u{4DBF}\\u{8C48}-\\u{FAFF}\\u{3040}-\\u{309F}\\u{30A0}-\\u{30FF}\\u{FF65}-\\u{FF9F}"
            + "\\u{2F00}-\\u{2FDF}\\u{0E40}-\\u{0E7F}\\u{0E80}-\\u{0EFF}\\u{1780}-\\u{17FF}\\u{1000}-\\u{109F}\\u{AA60}-\\u{AA7F}"
            + "\\u{A9E0}-\\u{A9FF}\\u{AC00}-\\u{D7AF}\\u{1100}-\\u{11FF}]+",
        ##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
    ]

    /// LLAMA_VOCAB_PRE_TYPE_HUNYUAN (Hunyuan-A13B's tiktoken vocabulary): Qwen2's regex, without
    /// Qwen2's NFC normaliser.
    static let hunyuanPattern = preTokenizerPatterns["qwen2"]!

    /// Names llama.cpp gives the same pipeline.
    static let preTokenizerAliases = ["minimax-m2": "gpt-4o"]

    /// The `tokenizer.ggml.pre` names Jindou tokenizes with.
    public static var supportedPreTokenizers: [String] {
        (Array(preTokenizerPatterns.keys) + preTokenizerSequences.keys + unnormalizedPatterns.keys + preTokenizerAliases.keys
            + ["afmoe", "hunyuan"]).sorted()
    }

    /// The normalisations and pre-tokenizer steps `pre` stands for; nil for an unknown name.
    static func pipeline(_ name: String) -> (normalizations: [Tokenizer.Normalization], steps: [Tokenizer.PreTokenizer])? {
        let pre = preTokenizerAliases[name] ?? name
        let byteLevel = Tokenizer.PreTokenizer.byteLevel(addPrefixSpace: false, useRegex: false)
        if let pattern = preTokenizerPatterns[pre] {
            return ([.nfc], [.split(pattern: pattern, behavior: "Isolated", invert: false), byteLevel])
        }
        if pre == "hunyuan" {
            return ([], [.split(pattern: hunyuanPattern, behavior: "Isolated", invert: false), byteLevel])
        }
        if pre == "afmoe" {
            return ([], [.digitGroupsOfThree] + afmoeSplits.map { .split(pattern: $0, behavior: "Isolated", invert: false) } + [byteLevel])
        }
        if let pattern = unnormalizedPatterns[pre] {
            return ([], [.split(pattern: pattern, behavior: "Isolated", invert: false), byteLevel])
        }
        if let patterns = preTokenizerSequences[pre] {
            return ([], patterns.map { .split(pattern: $0, behavior: "Isolated", invert: false) } + [byteLevel])
        }
        return nil
    }

    /// The `tokenizer.ggml.pre` name of a tokenizer.json pipeline: its Split regexes in order.
    static func preTokenizerName(splitRegexes regexes: [String]) -> String? {
        if regexes.count == 1, let name = (preTokenizerPatterns.first { $0.value == regexes[0] } ?? unnormalizedPatterns.first { $0.value == regexes[0] })?.key {
            return name
        }
        return preTokenizerSequences.first { $0.value == regexes }?.key
    }
}

extension Tokenizer {
    /// A byte-level BPE tokenizer from a GGUF file's vocabulary. `normal` tokens form the BPE
    /// vocabulary; `control` tokens become special added tokens and `user_defined` ones
    /// ordinary added tokens (matched before BPE, as tokenizer.json's `added_tokens` are);
    /// `unused` padding entries are left out. `add_bos_token`/`add_eos_token` put those ids
    /// around the text when encoding with `addSpecialTokens`. `path` names the file in errors.
    public convenience init(ggml vocabulary: GGMLVocabulary, path: String) throws {
        if vocabulary.model == "llama" {
            try self.init(sentencePiece: vocabulary, path: path)
            return
        }
        guard vocabulary.model == "gpt2" else {
            throw TokenizerError.unsupported(path: path, component: "tokenizer.ggml.model", type: vocabulary.model)
        }
        guard let pre = vocabulary.pre, let pipeline = GGMLVocabulary.pipeline(pre) else {
            throw TokenizerError.malformed(
                path: path,
                reason: "tokenizer.ggml.pre '\(vocabulary.pre ?? "(missing)")' is not supported (supported: \(GGMLVocabulary.supportedPreTokenizers.joined(separator: ", ")))")
        }
        guard vocabulary.tokenTypes.count == vocabulary.tokens.count else {
            throw TokenizerError.malformed(
                path: path, reason: "tokenizer.ggml.token_type has \(vocabulary.tokenTypes.count) entries for \(vocabulary.tokens.count) tokens")
        }
        var words: [String: Int] = [:]
        words.reserveCapacity(vocabulary.tokens.count)
        var added: [AddedToken] = []
        for (id, (token, rawType)) in zip(vocabulary.tokens, vocabulary.tokenTypes).enumerated() {
            switch GGMLVocabulary.TokenType(rawValue: rawType) {
            case .normal: words[token] = id
            case .control: added.append(AddedToken(id: id, content: token, special: true, leftStrip: false, rightStrip: false))
            case .userDefined: added.append(AddedToken(id: id, content: token, special: false, leftStrip: false, rightStrip: false))
            case .unused: continue
            case .unknown, .byte, nil:
                throw TokenizerError.malformed(path: path, reason: "token \(id) '\(token)' has type \(rawType), which a gpt2 vocabulary does not use")
            }
        }
        let merges = vocabulary.merges.map { line in
            line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        }
        for (name, id) in [("bos", vocabulary.bosTokenID), ("eos", vocabulary.eosTokenID)] {
            if let id, !(0..<vocabulary.tokens.count).contains(id) {
                throw TokenizerError.malformed(path: path, reason: "tokenizer.ggml.\(name)_token_id \(id) is not a token id (\(vocabulary.tokens.count) tokens)")
            }
        }
        let prefix = vocabulary.addBOS ? vocabulary.bosTokenID.map { [$0] } ?? [] : []
        let suffix = vocabulary.addEOS ? vocabulary.eosTokenID.map { [$0] } ?? [] : []
        try self.init(path: path, vocabulary: words, addedTokens: added, merges: merges, normalizations: pipeline.normalizations,
                      preTokenizers: pipeline.steps, ignoreMerges: false, prefixTokens: prefix, suffixTokens: suffix)
    }
}

extension Tokenizer {
    /// A SentencePiece tokenizer from a GGUF `llama` vocabulary, as llama.cpp tokenizes it:
    /// `normal`, `byte` and padding pieces are the SPM vocabulary (byte pieces `<0xXX>`);
    /// `control` and `unknown` tokens become special added tokens and `user_defined` ones
    /// ordinary added tokens, matched in the text first (llama.cpp with parse_special).
    convenience init(sentencePiece vocabulary: GGMLVocabulary, path: String) throws {
        let count = vocabulary.tokens.count
        guard vocabulary.tokenTypes.count == count, vocabulary.scores.count == count else {
            throw TokenizerError.malformed(
                path: path, reason: "tokenizer.ggml.token_type (\(vocabulary.tokenTypes.count)) and tokenizer.ggml.scores (\(vocabulary.scores.count)) must have one entry per token (\(count))")
        }
        var pieces: [String: Int] = [:]
        pieces.reserveCapacity(count)
        var added: [AddedToken] = []
        var byteTokens = [Int](repeating: -1, count: 256)
        var byteValues: [Int: UInt8] = [:]
        var unknown: Int?
        for (id, (token, rawType)) in zip(vocabulary.tokens, vocabulary.tokenTypes).enumerated() {
            if pieces[token] == nil { pieces[token] = id }
            switch GGMLVocabulary.TokenType(rawValue: rawType) {
            case .normal, .unused: break
            case .byte:
                guard token.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">"), let value = UInt8(token.dropFirst(3).prefix(2), radix: 16) else {
                    throw TokenizerError.malformed(path: path, reason: "byte token \(id) '\(token)' is not <0xXX>")
                }
                if byteTokens[Int(value)] < 0 { byteTokens[Int(value)] = id }
                byteValues[id] = value
            case .control, .unknown:
                if rawType == GGMLVocabulary.TokenType.unknown.rawValue { unknown = unknown ?? id }
                added.append(AddedToken(id: id, content: token, special: true, leftStrip: false, rightStrip: false))
            case .userDefined:
                added.append(AddedToken(id: id, content: token, special: false, leftStrip: false, rightStrip: false))
            case nil:
                throw TokenizerError.malformed(path: path, reason: "token \(id) '\(token)' has type \(rawType), which llama.cpp does not define")
            }
        }
        for (name, id) in [("bos", vocabulary.bosTokenID), ("eos", vocabulary.eosTokenID)] {
            if let id, !(0..<count).contains(id) {
                throw TokenizerError.malformed(path: path, reason: "tokenizer.ggml.\(name)_token_id \(id) is not a token id (\(count) tokens)")
            }
        }
        let model = SentencePieceModel(pieces: pieces, scores: vocabulary.scores, byteTokens: byteTokens, byteValues: byteValues,
                                       unknownID: vocabulary.unknownTokenID ?? unknown, addSpacePrefix: vocabulary.addSpacePrefix)
        let prefix = vocabulary.addBOS ? vocabulary.bosTokenID.map { [$0] } ?? [] : []
        let suffix = vocabulary.addEOS ? vocabulary.eosTokenID.map { [$0] } ?? [] : []
        try self.init(path: path, vocabulary: pieces, addedTokens: added, merges: [], normalizations: [], preTokenizers: [],
                      ignoreMerges: false, prefixTokens: prefix, suffixTokens: suffix, sentencePiece: model)
    }
}

extension GGMLVocabulary {
    /// The vocabulary llama.cpp's converter writes for a checkpoint's byte-level BPE tokenizer
    /// (convert_hf_to_gguf.py `_set_vocab_gpt2`, gguf-py `SpecialVocab`): one token per id up
    /// to `vocabularySize` (`[PADn]`, unused, where the tokenizer has none), added tokens as
    /// control tokens when special or shaped like `<|…|>`, user-defined otherwise; merges as
    /// "left right"; bos/eos/unk/pad ids from tokenizer_config.json's token strings, else
    /// config.json's `*_token_id`; `add_bos_token`/`add_eos_token` from tokenizer_config.json;
    /// `pre` named from the pre-tokenizer regex (`supportedPreTokenizers`, others refused).
    /// The chat template is in `chatTemplate(tokenizerConfig:)`.
    public init(tokenizerJSON: Data, tokenizerConfig: Data?, modelConfig: Data?, vocabularySize: Int, path: String) throws {
        guard let root = try? JSONSerialization.jsonObject(with: tokenizerJSON) as? [String: Any],
              let model = root["model"] as? [String: Any], let vocab = model["vocab"] as? [String: Any] else {
            throw TokenizerError.malformed(path: path, reason: "not a tokenizer.json with a model vocabulary")
        }
        guard (model["type"] as? String ?? "BPE") == "BPE", model["byte_fallback"] as? Bool != true else {
            throw TokenizerError.unsupported(path: path, component: "model", type: model["type"] as? String ?? "BPE with byte_fallback")
        }
        // The Split regexes of the pre-tokenizer (alone or inside a Sequence), in order.
        var regexes: [String] = []
        func find(_ object: [String: Any]?) {
            guard let object else { return }
            if object["type"] as? String == "Split", let regex = (object["pattern"] as? [String: Any])?["Regex"] as? String {
                regexes.append(regex)
            }
            for child in object["pretokenizers"] as? [[String: Any]] ?? [] { find(child) }
        }
        find(root["pre_tokenizer"] as? [String: Any])
        guard let pre = Self.preTokenizerName(splitRegexes: regexes) else {
            throw TokenizerError.malformed(
                path: path, reason: "its pre-tokenizer regex is not one llama.cpp names and Jindou reads (supported: \(Self.supportedPreTokenizers.joined(separator: ", ")))")
        }
        var byID: [Int: (String, Int32)] = [:]
        for (token, id) in vocab {
            guard let id = (id as? NSNumber)?.intValue else { throw TokenizerError.malformed(path: path, reason: "vocab entry '\(token)' is not an id") }
            byID[id] = (token, TokenType.normal.rawValue)
        }
        let added = root["added_tokens"] as? [[String: Any]] ?? []
        for entry in added {
            guard let id = (entry["id"] as? NSNumber)?.intValue, let content = entry["content"] as? String else {
                throw TokenizerError.malformed(path: path, reason: "added token without id or content")
            }
            let special = entry["special"] as? Bool ?? false || Self.looksSpecial(content)
            byID[id] = (content, special ? TokenType.control.rawValue : TokenType.userDefined.rawValue)
        }
        guard let largest = byID.keys.max(), largest < vocabularySize else {
            throw TokenizerError.malformed(path: path, reason: "token ids reach \(byID.keys.max() ?? -1), beyond the model's vocabulary of \(vocabularySize)")
        }
        let entries = (0..<vocabularySize).map { byID[$0] ?? ("[PAD\($0)]", TokenType.unused.rawValue) }
        let merges: [String] = (model["merges"] as? [Any] ?? []).map { entry in
            if let text = entry as? String { return text }
            // Pairs (transformers ≥ 4.45): a space inside a token is written as U+0120, as the converter does.
            return (entry as? [String] ?? []).map { $0.replacingOccurrences(of: " ", with: "\u{120}") }.joined(separator: " ")
        }
        let config = tokenizerConfig.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        let modelSettings = modelConfig.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        /// SpecialVocab: the tokenizer_config.json token string among added_tokens, else config.json's id.
        func specialID(_ kind: String) -> Int? {
            let entry = config["\(kind)_token"]
            let content = entry as? String ?? (entry as? [String: Any])?["content"] as? String
            if let content, let id = added.first(where: { $0["content"] as? String == content })?["id"] as? NSNumber {
                return id.intValue < vocabularySize ? id.intValue : nil
            }
            guard let id = (modelSettings["\(kind)_token_id"] as? NSNumber)?.intValue, (0..<vocabularySize).contains(id) else { return nil }
            return id
        }
        self.init(model: "gpt2", pre: pre, tokens: entries.map(\.0), tokenTypes: entries.map(\.1), merges: merges,
                  bosTokenID: specialID("bos"), eosTokenID: specialID("eos"),
                  addBOS: config["add_bos_token"] as? Bool ?? false, addEOS: config["add_eos_token"] as? Bool ?? false)
        unknownTokenID = specialID("unk")
        paddingTokenID = specialID("pad")
        hasAddBOS = config["add_bos_token"] is Bool
        hasAddEOS = config["add_eos_token"] is Bool
    }

    /// The special ids convert_hf_to_gguf.py's `_set_vocab_glm` (GLM4, GLM4-MoE) sets after
    /// tokenizer_config.json's, in its order, by `tokenizer.ggml.{kind}_token_id` kind: BOS
    /// `[gMASK]` and unknown `<|endoftext|>` unless already set (gguf-py's SpecialVocab keeps
    /// the first id of a kind), end of turn `<|user|>`, end of message `<|observation|>`.
    /// Tokens the vocabulary lacks are skipped.
    public func glmSpecialTokens() -> [(kind: String, id: Int)] {
        let additions = [("bos", "[gMASK]", bosTokenID), ("eot", "<|user|>", nil), ("unknown", "<|endoftext|>", unknownTokenID),
                         ("eom", "<|observation|>", nil)]
        return additions.compactMap { kind, token, existing in
            guard existing == nil, let id = tokens.firstIndex(of: token) else { return nil }
            return (kind, id)
        }
    }

    /// `TextModel.does_token_look_special`: added tokens some checkpoints leave unmarked.
    static func looksSpecial(_ token: String) -> Bool {
        ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(token)
            || (token.hasPrefix("<|") && token.hasSuffix("|>"))
            || (token.hasPrefix("<｜") && token.hasSuffix("｜>"))
            || (token.hasPrefix("<unused") && token.hasSuffix(">"))
    }

    /// tokenizer_config.json's `chat_template` (the `default` one of a list), else the
    /// checkpoint's chat_template.jinja, as the converter picks it.
    public static func chatTemplate(tokenizerConfig: Data?, jinja: Data?) -> String? {
        let config = tokenizerConfig.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        if let text = config["chat_template"] as? String { return text }
        if let list = config["chat_template"] as? [[String: Any]] {
            return list.first { $0["name"] as? String == "default" }?["template"] as? String ?? list.first?["template"] as? String
        }
        return jinja.map { String(decoding: $0, as: UTF8.self) }
    }
}
