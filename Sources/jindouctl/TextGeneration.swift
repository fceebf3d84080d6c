import Foundation
import JindouAdmin
import JindouModel
import JindouServing
import JindouTemplates
import JindouTokenizer
import Synchronization

/// Prints text as it streams, flushing after every piece.
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// Turns tokens into text pieces on the fly (for the in-process engine's token callback).
final class StreamPrinter: Sendable {
    private let state: Mutex<StreamingDetokenizer>
    private let collected = Mutex("")
    let echo: Bool

    init(tokenizer: Tokenizer, echo: Bool) {
        state = Mutex(StreamingDetokenizer(tokenizer: tokenizer))
        self.echo = echo
    }

    func token(_ id: Int) {
        let piece = state.withLock { $0.append(id) }
        collected.withLock { $0 += piece }
        if echo { emit(piece) }
    }

    func finish() -> String {
        let tail = state.withLock { $0.finish() }
        if echo { emit(tail) }
        return collected.withLock { $0 += tail; return $0 }
    }
}

/// One streamed answer from a coordinator's OpenAI endpoint: prints content deltas as they
/// arrive and returns the whole text, the finish reason and usage.
func streamCompletion(client: AdminClient, path: String, body: [String: Any], echo: Bool) async throws -> (text: String, finish: String, usage: [String: Int]) {
    var request = body
    request["stream"] = true
    request["stream_options"] = ["include_usage": true]
    var text = ""
    var finish = "length"
    var usage: [String: Int] = [:]
    // Reasoning (`reasoning_content`, split out by the server's reasoning parser) is shown
    // dimmed on a terminal and is not part of the answer's text.
    let dim = isatty(STDOUT_FILENO) != 0
    var inReasoning = false
    for try await payload in client.events(path, body: try JSONSerialization.data(withJSONObject: request)) {
        guard let object = try? JSONSerialization.jsonObject(with: payload) as? [String: Any] else { continue }
        if let error = object["error"] as? [String: Any] {
            throw CLIError(message: "coordinator: \(error["message"] as? String ?? "error")")
        }
        if let u = object["usage"] as? [String: Int] { usage = u }
        for choice in object["choices"] as? [[String: Any]] ?? [] {
            let delta = choice["delta"] as? [String: Any]
            if echo, let reasoning = delta?["reasoning_content"] as? String, !reasoning.isEmpty {
                if !inReasoning && dim { emit("\u{1B}[2m") }
                inReasoning = true
                emit(reasoning)
            }
            let piece = delta?["content"] as? String ?? choice["text"] as? String ?? ""
            if echo && inReasoning && !piece.isEmpty {
                emit(dim ? "\u{1B}[0m\n" : "\n")
                inReasoning = false
            }
            text += piece
            if echo { emit(piece) }
            if let reason = choice["finish_reason"] as? String { finish = reason }
        }
    }
    if echo && inReasoning && dim { emit("\u{1B}[0m") }
    return (text, finish, usage)
}

/// The tokenizer (and chat template) of a checkpoint directory or GGUF file, or a clear error.
/// The same text side the server uses (`ServingText`); its stop ids include the model's EOS ids.
func textSide(of model: String) throws -> (Tokenizer, ChatTemplate?, [String: String], Set<Int>) {
    let text: ServingText, missing: String
    if isFile(model) {
        let source = try GGUFCheckpoint(path: model)
        text = try ServingText(gguf: source.file, description: source.description)
        missing = "no tokenizer (tokenizer.ggml.model)"
    } else {
        text = try ServingText(directory: model, description: try Checkpoint(directory: model).modelDescription())
        missing = "no tokenizer.json"
    }
    guard let tokenizer = text.tokenizer else { throw CLIError(message: "\(model) has \(missing); use --prompt-ids") }
    return (tokenizer, text.chatTemplate, text.specialTokens, text.stopTokenIDs)
}

/// Whether `path` is an existing file (a GGUF model) rather than a checkpoint directory.
func isFile(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
}
