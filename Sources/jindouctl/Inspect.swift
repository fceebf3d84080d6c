import ArgumentParser
import Foundation
import JindouModel

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What a GGUF file holds: architecture, parts, and tensors, bytes and bits per weight of each ggml type.",
        discussion: """
            Opens every part of a split model (give the first, …-00001-of-0000N.gguf) and checks its layout; says
            whether Jindou can load it and names any tensor of a type it does not compute with.
            Example: jindouctl inspect Qwen3-30B-A3B-Q4_K_M.gguf --json
            """
    )

    @Argument(help: "The GGUF file (the first part of a split model).")
    var file: String

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let inspection: GGUFInspection
        do { inspection = GGUFInspection(try GGUFFile(path: file)) } catch { throw CLIError(error) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            FileHandle.standardOutput.write(try encoder.encode(inspection) + Data("\n".utf8))
            return
        }
        let gib = { (bytes: Int) -> String in
            let (value, unit) = bytes >= 1 << 30 ? (Double(bytes) / Double(1 << 30), "GiB") : bytes >= 1 << 20 ? (Double(bytes) / Double(1 << 20), "MiB")
                : (Double(bytes) / 1024, "KiB")
            return String(format: "%.2f %@", value, unit)
        }
        print("file          \(inspection.path)\(inspection.parts.count > 1 ? " (\(inspection.parts.count) parts)" : "")")
        print("architecture  \(inspection.architecture ?? "(none)")\(inspection.architectureSupported ? "" : " — not supported by Jindou")")
        if let name = inspection.name { print("name          \(name)") }
        if let fileType = inspection.fileType { print("file type     \(fileType)") }
        print("tensors       \(inspection.tensorCount), \(inspection.elements) weights, \(gib(inspection.bytes)), "
              + String(format: "%.2f bits/weight", inspection.bitsPerWeight))
        print("")
        print("TYPE      TENSORS       BYTES   SHARE  BITS/W  JINDOU")
        for t in inspection.types {
            print(t.type.padding(toLength: 8, withPad: " ", startingAt: 0)
                  + String(format: " %8d %11@ %6.1f%% %7.3f  %@", t.tensors, gib(t.bytes) as NSString,
                           100 * Double(t.bytes) / Double(max(1, inspection.bytes)), t.bitsPerWeight, t.readable ? "yes" : "no"))
        }
        if !inspection.unreadableTensors.isEmpty {
            print("\nJindou does not compute with the types of: " + inspection.unreadableTensors.prefix(8).joined(separator: ", ")
                  + (inspection.unreadableTensors.count > 8 ? ", … (\(inspection.unreadableTensors.count))" : ""))
        }
    }
}
