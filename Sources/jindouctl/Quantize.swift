import ArgumentParser
import Foundation
import JindouModel
import JindouNumerics

/// `jindouctl quantize`: a checkpoint as a GGUF file llama.cpp reads (docs/quantization.md).
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a Qwen3-MoE checkpoint as GGUF with Q8_0 or Q4_K experts (llama.cpp's qwen3moe layout).",
        discussion: """
            Routed experts in --to, other matrices Q8_0, norms and routers F32, encoded as
            llama-quantize does. The vocabulary is written without a tokenizer (tokenizer.ggml.model
            = none), enough for llama-bench and for comparing logits by token id.
            Example: jindouctl quantize --to q8_0 --model /tmp/q30b-8l --out /tmp/q30b-8l-q8_0.gguf
            """
    )

    @Option(help: "Expert format: q8_0 or q4_k.") var to: String
    @Option(help: "Checkpoint directory.") var model: String
    @Option(help: "Output .gguf file (written to FILE.partial, renamed when complete).") var out: String

    func validate() throws {
        guard BlockFormat(rawValue: to) != nil else { throw ValidationError("--to must be q8_0 or q4_k") }
    }

    func run() throws {
        do {
            let checkpoint = try Checkpoint(directory: model)
            let description = try ModelDescription(checkpoint: checkpoint)
            let writer = try GGUFExport.qwen3Moe(checkpoint: checkpoint, description: description, expertFormat: BlockFormat(rawValue: to)!,
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
}
