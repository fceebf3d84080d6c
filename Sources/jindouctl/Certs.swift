import ArgumentParser
import Foundation
import JindouAdmin
import JindouWire

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Certificates and secrets for a cluster.",
        subcommands: [CertsInit.self]
    )
}

struct CertsInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a cluster CA, node certificates and a cluster secret (mutual TLS + --token-file).",
        discussion: """
            Writes DIR/ca.pem, DIR/ca-key.pem, DIR/NODE.pem and DIR/NODE-key.pem for each node, and DIR/token
            (a random cluster secret) if it does not exist. Run again with new --nodes to issue more certificates
            from the same CA. Example:
              jindouctl certs init --out /etc/jindou/tls --nodes coordinator,host-0,host-1,admin
              jindoud worker … --tls-ca /etc/jindou/tls/ca.pem --tls-cert /etc/jindou/tls/host-0.pem --tls-key /etc/jindou/tls/host-0-key.pem
            """
    )

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "Comma-separated node names (coordinator, workers, operators).")
    var nodes: String

    @Option(help: "Extra DNS names for the certificates, comma-separated.")
    var hosts: String = ""

    @Option(help: "Days the node certificates are valid.")
    var days: Int = 825

    @Flag(help: "Print the written paths as JSON.")
    var json = false

    var nodeList: [String] { nodes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func validate() throws {
        guard !nodeList.isEmpty else { throw ValidationError("--nodes must name at least one node") }
        guard nodeList.allSatisfy({ $0.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } }) else {
            throw ValidationError("node names may contain letters, digits, '-', '_' and '.' only")
        }
        guard days > 0 else { throw ValidationError("--days must be positive") }
    }

    func run() throws {
        var written: [String]
        do {
            written = try ClusterCertificates.initialize(
                directory: out, nodes: nodeList, hosts: hosts.split(separator: ",").map(String.init), days: days)
            let tokenPath = out + "/token"
            if !FileManager.default.fileExists(atPath: tokenPath) {
                guard FileManager.default.createFile(atPath: tokenPath, contents: Data((ClusterSecret.generate() + "\n").utf8),
                                                     attributes: [.posixPermissions: 0o600]) else {
                    throw ValidationError("cannot write \(tokenPath)")
                }
                written.append(tokenPath)
            }
        } catch {
            throw CLIError(error)
        }
        if json {
            FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: ["written": written], options: [.sortedKeys]) + Data("\n".utf8))
        } else {
            written.forEach { print($0) }
        }
    }
}
