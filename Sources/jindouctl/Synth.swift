import ArgumentParser
import Foundation
import JindouModel
import JindouNumerics

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint with a real model's shapes, random weights and fewer layers.",
        discussion: """
            For benchmarks of models larger than this machine: every matrix has the named model's exact shape.
            Example: jindouctl synth --like qwen3-30b-a3b --layers 4 --dtype bf16 --out /tmp/q30b-4l
            """
    )

    @Option(help: "Model whose shapes to copy: \(SyntheticModelShape.presets.keys.sorted().joined(separator: ", ")).")
    var like: String

    @Option(help: "Decoder layers to write.")
    var layers: Int = 4

    @Option(help: "bf16, f16 or f32.")
    var dtype: String = "bf16"

    @Option(help: "Output directory.")
    var out: String

    @Option(name: .customLong("vocab-size"), help: "Override the vocabulary size (smaller embedding and LM head).")
    var vocabSize: Int?

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    var weightDType: DType? {
        switch dtype {
        case "bf16": .bfloat16
        case "f16": .float16
        case "f32": .float32
        default: nil
        }
    }

    func validate() throws {
        guard SyntheticModelShape.presets[like] != nil else {
            throw ValidationError("unknown --like '\(like)'; choose from \(SyntheticModelShape.presets.keys.sorted().joined(separator: ", "))")
        }
        guard layers >= 1 else { throw ValidationError("--layers must be ≥ 1") }
        guard weightDType != nil else { throw ValidationError("--dtype must be bf16, f16 or f32") }
    }

    func run() throws {
        let progress = ProgressBar(label: "writing \(like)", total: 1)
        var last = 0
        do {
            try SyntheticCheckpoint.write(
                shape: SyntheticModelShape.presets[like]!, layers: layers, dtype: weightDType!, directory: out, seed: seed,
                vocabularySize: vocabSize) { written, total in
                    if last == 0 { progress.reset(total: total) }
                    progress.advance(by: written - last)
                    last = written
                }
        } catch {
            throw CLIError(error)
        }
        progress.finish()
        print(out)
    }
}
