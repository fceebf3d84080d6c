import ArgumentParser
import Foundation
import JindouModel
import JindouNumerics
import JindouTokenizer

/// `jindouctl quantize`: a checkpoint as a GGUF file llama.cpp reads (docs/quantization.md).
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a Qwen3-MoE, GLM4-MoE or DeepSeek-V3/Kimi-K2 checkpoint as GGUF (llama.cpp's qwen3moe / glm4moe / deepseek2 layout), quantised as llama-quantize quantises.",
        discussion: """
            --to BF16|F16|F32: every matrix unquantised in that type (llama-quantize's and llama-imatrix's input).
            --to MIX: one of llama-quantize's mixes (\(QuantizationMix.allCases.map(\.rawValue).joined(separator: ", "));
            Q4_K/Q5_K/Q3_K mean the _M mixes, as in llama-quantize), each tensor in the type llama-quantize's rules give
            it without an importance matrix (e.g. Q4_K_M: Q4_K with attn_v and some ffn_down in Q6_K, output in Q6_K;
            rows that are not whole super-blocks fall back to 32-wide types).
            --experts FORMAT: the routed experts in FORMAT, every other matrix Q8_0 and the token embedding as
            --token-embedding-type — what a worker started with --expert-format FORMAT computes.
            Norms and routers stay F32; DeepSeek-V3's kv_b_proj is split into attn_k_b / attn_v_b as llama.cpp's
            converter does. FP8 checkpoints are refused. The checkpoint's tokenizer.json is written as llama.cpp's
            tokenizer metadata (tokenizer.ggml.*, chat template); without one, the vocabulary is written without a
            tokenizer (tokenizer.ggml.model = none), enough for llama-bench and for comparing logits by token id.
            Examples: jindouctl quantize --to Q4_K_M --model /tmp/q30b-8l --out /tmp/q30b-8l-Q4_K_M.gguf
                      jindouctl quantize --experts q4_k --model /tmp/q30b-8l --out /tmp/q30b-8l-experts-q4_k.gguf
            """
    )

    @Option(help: "A llama-quantize mix (Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, IQ4_XS, …) or BF16/F16/F32 (unquantised, as the converter's --outtype).") var to: String?
    @Option(help: "Only the routed experts in this block format (e.g. q8_0, q4_k); other matrices Q8_0.") var experts: String?
    @Option(help: "An importance matrix from llama-imatrix (GGUF), used as llama-quantize's --imatrix uses it.") var imatrix: String?
    @Option(help: "Checkpoint directory.") var model: String
    @Option(help: "Output .gguf file (written to FILE.partial, renamed when complete).") var out: String
    @Option(name: .customLong("token-embedding-type"), help: "With --experts: the token embedding's format, q8_0 or f32.")
    var tokenEmbeddingType = "q8_0"

    func validate() throws {
        guard (to == nil) != (experts == nil) else { throw ValidationError("give exactly one of --to MIX or --experts FORMAT") }
        if let to, QuantizationMix(name: to) == nil, !["BF16", "F16", "F32"].contains(to.uppercased()) {
            throw ValidationError("--to must be one of \(QuantizationMix.allCases.map(\.rawValue).joined(separator: ", ")), not '\(to)'")
        }
        if let experts {
            guard let format = BlockFormat(rawValue: experts.lowercased()), format.canQuantize else {
                throw ValidationError("--experts must be a block format Jindou encodes (\(BlockFormat.allCases.filter(\.canQuantize).map(\.rawValue).joined(separator: ", "))), not '\(experts)'")
            }
        }
        guard ["q8_0", "f32"].contains(tokenEmbeddingType) else { throw ValidationError("--token-embedding-type must be q8_0 or f32") }
    }

    var recipe: GGUFExport.Recipe {
        if let to {
            switch to.uppercased() {
            case "BF16": return .float(.bf16)
            case "F16": return .float(.f16)
            case "F32": return .float(.f32)
            default: return .mix(QuantizationMix(name: to)!)
            }
        }
        return .experts(BlockFormat(rawValue: experts!.lowercased())!, embedding: BlockFormat(rawValue: tokenEmbeddingType))
    }

    func run() throws {
        do {
            let checkpoint = try Checkpoint(directory: model)
            let description = try ModelDescription(checkpoint: checkpoint)
            let writer = try GGUFExport.model(checkpoint: checkpoint, description: description, recipe: recipe,
                                              importance: try imatrix.map { try ImportanceMatrix(path: $0) },
                                              tokenizer: try Self.tokenizerMetadata(checkpoint, description: description),
                                              name: URL(fileURLWithPath: model).lastPathComponent)
            let total = writer.tensors.count
            let start = Date()
            try writer.write(to: out) { index in
                FileHandle.standardError.write(Data("\r[\(index + 1)/\(total)] \(writer.tensors[index].name) (\(writer.tensors[index].type))\u{1B}[K".utf8))
            }
            let bytes = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? NSNumber)?.intValue ?? 0
            FileHandle.standardError.write(Data("\n".utf8))
            print(String(format: "wrote %@: %d tensors, %.1f MB in %.1f s", out, total, Double(bytes) / 1e6, Date().timeIntervalSince(start)))
        } catch {
            throw CLIError(error)
        }
    }

    /// llama.cpp's `tokenizer.*` metadata for the checkpoint's tokenizer.json, in the order its
    /// converter writes it (GLM4-MoE: with `_set_vocab_glm`'s special ids); nil without tokenizer.json.
    static func tokenizerMetadata(_ checkpoint: Checkpoint, description: ModelDescription) throws -> [(String, GGUFWriter.Value)]? {
        let path = checkpoint.path(of: "tokenizer.json")
        guard let json = FileManager.default.contents(atPath: path) else { return nil }
        let config = FileManager.default.contents(atPath: checkpoint.path(of: "tokenizer_config.json"))
        let v = try GGMLVocabulary(tokenizerJSON: json, tokenizerConfig: config, modelConfig: checkpoint.configData,
                                   vocabularySize: description.vocabularySize, path: path)
        var metadata: [(String, GGUFWriter.Value)] = [
            ("tokenizer.ggml.model", .string(v.model)),
            ("tokenizer.ggml.pre", .string(v.pre ?? "default")),
            ("tokenizer.ggml.tokens", .strings(v.tokens)),
            ("tokenizer.ggml.token_type", .i32s(v.tokenTypes)),
            ("tokenizer.ggml.merges", .strings(v.merges)),
        ]
        let ids = [("bos", v.bosTokenID), ("eos", v.eosTokenID), ("unknown", v.unknownTokenID), ("padding", v.paddingTokenID)]
        for (name, id) in ids { if let id { metadata.append(("tokenizer.ggml.\(name)_token_id", .u32(UInt32(id)))) } }
        if description.architecture == .glm4Moe {
            for (name, id) in v.glmSpecialTokens() { metadata.append(("tokenizer.ggml.\(name)_token_id", .u32(UInt32(id)))) }
        }
        if v.hasAddBOS { metadata.append(("tokenizer.ggml.add_bos_token", .bool(v.addBOS))) }
        if v.hasAddEOS { metadata.append(("tokenizer.ggml.add_eos_token", .bool(v.addEOS))) }
        let jinja = FileManager.default.contents(atPath: checkpoint.path(of: "chat_template.jinja"))
        if let template = GGMLVocabulary.chatTemplate(tokenizerConfig: config, jinja: jinja) {
            metadata.append(("tokenizer.chat_template", .string(template)))
        }
        return metadata
    }
}
