import ArgumentParser
import Foundation
import JindouModel
import JindouNumerics
import JindouTokenizer

/// `jindouctl quantize`: a checkpoint as a GGUF file llama.cpp reads (docs/quantization.md).
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a Qwen3-MoE, GLM4-MoE or DeepSeek-V3/Kimi-K2 checkpoint as GGUF with Q8_0 or Q4_K experts (llama.cpp's qwen3moe / glm4moe / deepseek2 layout).",
        discussion: """
            Routed experts in --to, other matrices Q8_0 (the token embedding as --token-embedding-type),
            (F32 where a width is not whole blocks), norms and routers F32, encoded as llama-quantize
            does; DeepSeek-V3's kv_b_proj is split into attn_k_b / attn_v_b as llama.cpp's converter
            does, kept in the checkpoint's dtype. FP8 checkpoints are refused. The checkpoint's tokenizer.json is
            written as llama.cpp's tokenizer metadata (tokenizer.ggml.*, chat template); without one,
            the vocabulary is written without a tokenizer (tokenizer.ggml.model = none), enough for
            llama-bench and for comparing logits by token id.
            Example: jindouctl quantize --to q8_0 --model /tmp/q30b-8l --out /tmp/q30b-8l-q8_0.gguf
            """
    )

    @Option(help: "Expert format: q8_0 or q4_k.") var to: String
    @Option(help: "Checkpoint directory.") var model: String
    @Option(help: "Output .gguf file (written to FILE.partial, renamed when complete).") var out: String
    @Option(name: .customLong("token-embedding-type"), help: "Token embedding format: q8_0 (llama-quantize's default) or f32.")
    var tokenEmbeddingType = "q8_0"

    func validate() throws {
        guard [.q8_0, .q4_K].contains(BlockFormat(rawValue: to)) else { throw ValidationError("--to must be q8_0 or q4_k") }
        guard ["q8_0", "f32"].contains(tokenEmbeddingType) else { throw ValidationError("--token-embedding-type must be q8_0 or f32") }
    }

    func run() throws {
        do {
            let checkpoint = try Checkpoint(directory: model)
            let description = try ModelDescription(checkpoint: checkpoint)
            let writer = try GGUFExport.model(checkpoint: checkpoint, description: description, expertFormat: BlockFormat(rawValue: to)!,
                                              embeddingFormat: BlockFormat(rawValue: tokenEmbeddingType),
                                              tokenizer: try Self.tokenizerMetadata(checkpoint, description: description),
                                              name: URL(fileURLWithPath: model).lastPathComponent)
            let total = writer.tensors.count
            let start = Date()
            try writer.write(to: out) { index in
                FileHandle.standardError.write(Data("\r[\(index + 1)/\(total)] \(writer.tensors[index].name)\u{1B}[K".utf8))
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
