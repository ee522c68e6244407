package kubelet

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Limits on a termination message, as upstream: the file is read up to
// 4 KiB; the log fallback takes at most 80 lines and 2 KiB.
const (
	maxTerminationMessage = 4096
	maxFallbackLines      = 80
	maxFallbackBytes      = 2048
)

// terminationLogPath is where the kubelet keeps attempt's termination
// message file of container name in pod uid; the container sees it at its
// terminationMessagePath. It lives in the pod's volume directory, so
// teardown removes it.
func terminationLogPath(podRoot string, uid types.UID, name string, attempt uint32) string {
	return filepath.Join(podRoot, string(uid), "containers", name, strconv.FormatUint(uint64(attempt), 10))
}

// prepareTerminationLog creates the (empty, world-writable, so any user
// the container runs as can write it) termination message file.
func prepareTerminationLog(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating termination log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666)
	if err != nil {
		return fmt.Errorf("creating termination log: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o666); err != nil {
		return fmt.Errorf("setting termination log mode: %w", err)
	}
	return nil
}

// readTerminationMessage reads an exited container's message: its
// termination log, else (policy FallbackToLogsOnError and a failure) the
// tail of its log.
func readTerminationMessage(logPath, containerLog string, fallback bool, exitCode int32) string {
	if f, err := os.Open(logPath); err == nil {
		b, _ := io.ReadAll(io.LimitReader(f, maxTerminationMessage))
		f.Close()
		if len(b) > 0 {
			return string(b)
		}
	}
	if !fallback || exitCode == 0 || containerLog == "" {
		return ""
	}
	return logTail(containerLog)
}

// logTail is the message part of the last lines of a CRI log file
// ("<time> <stream> <P|F> <message>" per line).
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		_, _ = f.Seek(fi.Size()-window, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > maxFallbackLines {
		lines = lines[len(lines)-maxFallbackLines:]
	}
	var out strings.Builder
	for _, l := range lines {
		parts := strings.SplitN(string(l), " ", 4)
		if len(parts) < 4 {
			continue
		}
		out.WriteString(parts[3])
		if parts[2] == "F" {
			out.WriteByte('\n')
		}
	}
	s := out.String()
	if len(s) > maxFallbackBytes {
		s = s[len(s)-maxFallbackBytes:]
	}
	return s
}

// terminationPolicyFallback reports whether the pod's container name uses
// FallbackToLogsOnError.
func terminationPolicyFallback(pod *v1.Pod, name string) bool {
	if spec, ok := containerSpec(pod, name); ok {
		return spec.TerminationMessagePolicy == v1.TerminationMessageFallbackToLogsOnError
	}
	return false
}
