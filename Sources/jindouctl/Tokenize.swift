import ArgumentParser
import Foundation
import JindouTokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Token ids of text with a model's tokenizer (or decode ids back to text).",
        discussion: """
            Examples:
              jindouctl tokenize --model Tests/Fixtures/qwen3-moe-tiny "Hello 世界"
              jindouctl tokenize --tokenizer tokenizer.json --decode 9707,1879
              echo '["a", "b c"]' | jindouctl tokenize --tokenizer tokenizer.json --batch   # JSON array in, arrays of ids out
            """
    )

    @Option(help: "Checkpoint directory holding tokenizer.json, or a GGUF file with a tokenizer.")
    var model: String?

    @Option(help: "A tokenizer.json file.")
    var tokenizer: String?

    @Flag(name: .customLong("add-special-tokens"), help: "Add the post-processor's special tokens (e.g. BOS).")
    var addSpecialTokens = false

    @Flag(help: "Read a JSON array of strings on stdin; print a JSON array of id arrays.")
    var batch = false

    @Option(help: "Comma-separated ids to decode instead.")
    var decode: String?

    @Argument(help: "Text to tokenize.")
    var text: [String] = []

    func validate() throws {
        guard (model == nil) != (tokenizer == nil) else { throw ValidationError("give exactly one of --model or --tokenizer") }
    }

    func run() throws {
        let tokenizer: Tokenizer
        if let model, isFile(model) {
            do { tokenizer = try textSide(of: model).0 } catch let error as CLIError { throw error } catch { throw CLIError(error) }
        } else {
            let path = self.tokenizer ?? (model! as NSString).appendingPathComponent("tokenizer.json")
            do { tokenizer = try Tokenizer(contentsOf: path) } catch { throw CLIError(error) }
        }
        if let decode {
            let ids = decode.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            print(tokenizer.decode(ids))
        } else if batch {
            let input = FileHandle.standardInput.readDataToEndOfFile()
            guard let texts = try? JSONSerialization.jsonObject(with: input) as? [String] else {
                throw CLIError(message: "--batch expects a JSON array of strings on stdin")
            }
            let ids = texts.map { tokenizer.encode($0, addSpecialTokens: addSpecialTokens) }
            FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: ids) + Data("\n".utf8))
        } else {
            print(tokenizer.encode(text.joined(separator: " "), addSpecialTokens: addSpecialTokens).map(String.init).joined(separator: " "))
        }
    }
}
