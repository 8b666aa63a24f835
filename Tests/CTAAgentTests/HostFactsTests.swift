import CTACore
import Glibc
import Testing

@testable import CTAAgent

@Suite("Host facts")
struct HostFactsTests {
    @Test("os-release: quoted and unquoted values, comments, escapes")
    func parseOSRelease() {
        let text = """
            PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
            NAME="Debian GNU/Linux"
            VERSION_ID="12"
            # a comment
              ID=debian

            HOME_URL='https://www.debian.org/'
            ESCAPED="say \\"hi\\" for \\$5 and a \\\\ and \\q"
            TRAILING=value   \t
            EMPTY=
            not a field
            =novalue
            BAD KEY=x
            UNTERMINATED="open
            LAST="x" # comment after a value is not part of it
            """
        let fields = HostFacts.parseOSRelease(text)
        #expect(fields["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)")
        #expect(fields["NAME"] == "Debian GNU/Linux")
        #expect(fields["VERSION_ID"] == "12")
        #expect(fields["ID"] == "debian")
        #expect(fields["HOME_URL"] == "https://www.debian.org/")
        #expect(fields["ESCAPED"] == #"say "hi" for $5 and a \ and \q"#)
        #expect(fields["TRAILING"] == "value")
        #expect(fields["EMPTY"] == "")
        #expect(fields["UNTERMINATED"] == nil)
        #expect(fields["LAST"] == "x")
        #expect(fields["BAD KEY"] == nil && fields[""] == nil)
        #expect(fields.count == 9)
    }

    @Test("the operating system falls back field by field, then to uname")
    func operatingSystem() {
        let uname = UnameFacts(sysname: "Linux", release: "6.1.0-18-amd64", machine: "x86_64")
        #expect(
            HostFacts.operatingSystem(osRelease: ["ID": "ubuntu", "VERSION_ID": "24.04"], uname: uname)
                == OperatingSystem(name: "ubuntu", version: "24.04")
        )
        #expect(
            HostFacts.operatingSystem(osRelease: ["ID": "debian", "VERSION_CODENAME": "trixie"], uname: uname)
                == OperatingSystem(name: "debian", version: "trixie")
        )
        #expect(
            HostFacts.operatingSystem(osRelease: ["ID": "arch", "BUILD_ID": "rolling"], uname: uname)
                == OperatingSystem(name: "arch", version: "rolling")
        )
        #expect(
            HostFacts.operatingSystem(osRelease: ["ID": "", "VERSION_ID": ""], uname: uname)
                == OperatingSystem(name: "linux", version: "6.1.0-18-amd64")
        )
        #expect(
            HostFacts.operatingSystem(osRelease: [:], uname: UnameFacts(sysname: "", release: "", machine: ""))
                == OperatingSystem(name: "unknown", version: "unknown")
        )
    }

    @Test("MemTotal of /proc/meminfo in bytes")
    func memTotal() {
        #expect(HostFacts.memTotal("MemTotal:       16314672 kB\nMemFree:  1 kB\n") == 16_314_672 * 1024)
        #expect(HostFacts.memTotal("MemFree:  1 kB\nMemTotal: 2048 kB") == 2048 * 1024)
        #expect(HostFacts.memTotal("MemTotal: 512") == 512)
        #expect(HostFacts.memTotal("MemFree: 1 kB\n") == nil)
        #expect(HostFacts.memTotal("MemTotal: lots kB\n") == nil)
        #expect(HostFacts.memTotal("MemTotal: 18446744073709551615 kB\n") == nil)
    }

    @Test("addresses: local-only ones are dropped, the rest ordered v4 first, numerically")
    func addresses() {
        for local in [
            "127.0.0.1", "127.1.2.3", "169.254.10.1", "0.0.0.0", "::1", "::", "fe80::1", "fe80::1%eth0", "febf::1",
        ] {
            #expect(HostFacts.isLocalOnly(local), "\(local)")
        }
        for reachable in ["10.0.0.1", "192.168.1.20", "2001:db8::1", "fd00::2", "fec0::1", "::ffff:10.0.0.1"] {
            #expect(!HostFacts.isLocalOnly(reachable), "\(reachable)")
        }
        #expect(
            HostFacts.sortedAddresses(["2001:db8::10", "10.0.0.10", "2001:db8::9", "10.0.0.9", "10.0.0.10", "9.1.1.1"])
                == ["9.1.1.1", "10.0.0.9", "10.0.0.10", "2001:db8::9", "2001:db8::10"]
        )
    }

    @Test("detect() describes this machine")
    func detect() {
        let facts = HostFacts.detect()
        var buffer = [CChar](repeating: 0, count: 256)
        #expect(gethostname(&buffer, buffer.count - 1) == 0)
        #expect(
            facts.hostname == String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        #expect(facts.cpuCount >= 1)
        #expect(facts.memoryBytes > 0)
        #expect(!facts.arch.isEmpty)
        #expect(!facts.os.name.isEmpty && !facts.os.version.isEmpty)
        #expect(facts.addresses == HostFacts.sortedAddresses(facts.addresses))
        #expect(!facts.addresses.contains { HostFacts.isLocalOnly($0) })
        // Within the limits the wire contract puts on a registration.
        #expect(!facts.hostname.isEmpty && facts.hostname.utf8.count <= 255)
        #expect(facts.os.name.utf8.count <= 128 && facts.os.version.utf8.count <= 128)
        #expect(facts.arch.utf8.count <= 64)
    }

    @Test("load averages are not negative")
    func loadAverage() {
        let load = HostFacts.loadAverage()
        #expect(load.one >= 0 && load.five >= 0 && load.fifteen >= 0)
    }

    @Test("the agent version is a semantic version")
    func version() {
        let parts = AgentVersion.current.split(separator: ".")
        #expect(parts.count == 3 && parts.allSatisfy { Int($0) != nil })
    }
}
