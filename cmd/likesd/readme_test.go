package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's configuration table lists every flag likesd --help does,
// with the same defaults, so it cannot drift from the code.
func TestReadmeConfigurationTableMatchesFlags(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, found := strings.Cut(string(raw), "## Configuration")
	require.True(t, found)
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| ([^|]*) \\|")
	inTable := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		_, dup := inTable[m[1]]
		assert.False(t, dup, "--%s has two rows", m[1])
		inTable[m[1]] = strings.TrimSpace(m[2])
	}

	var help bytes.Buffer
	_, err = parseOptions([]string{"--help"}, nil, &help)
	require.ErrorIs(t, err, errHelp)
	// The same flags, read back from what --help printed.
	helpFlags := regexp.MustCompile(`(?m)^  --([a-z0-9-]+) `).FindAllStringSubmatch(help.String(), -1)
	want := map[string]string{}
	for _, m := range helpFlags {
		if m[1] != "version" {
			want[m[1]] = defaultIn(help.String(), m[1])
		}
	}
	require.NotEmpty(t, want)
	for name, def := range want {
		got, ok := inTable[name]
		if !assert.True(t, ok, "README lacks a row for --%s (default %q)", name, def) {
			continue
		}
		if def != "" {
			assert.Equal(t, "`"+def+"`", got, "README default of --%s", name)
		} else {
			assert.NotContains(t, got, "`", "--%s has no default value in --help: the README says in words what happens", name)
		}
	}
	for name := range inTable {
		_, ok := want[name]
		assert.True(t, ok, "README has a row for --%s, which likesd does not have", name)
	}
}

// defaultIn returns the "(default X)" --help shows for a flag ("0s" for a
// zero duration, which --help leaves out).
func defaultIn(help, name string) string {
	_, block, _ := strings.Cut(help, "\n  --"+name+" ")
	block, _, _ = strings.Cut(block, "\n  --")
	if m := regexp.MustCompile(`\(default ([^) ]+)\)\n`).FindStringSubmatch(block); m != nil {
		return m[1]
	}
	if strings.HasPrefix(block, "duration") {
		return "0s"
	}
	return ""
}

// The README's Development table names every Makefile target once, and
// only targets that exist.
func TestReadmeDevelopmentTableMatchesMakefile(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	makefile, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	_, section, found := strings.Cut(string(readme), "## Development")
	require.True(t, found)
	section, _, _ = strings.Cut(section, "\n## ")
	named := map[string]int{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		for _, m := range regexp.MustCompile("`([a-z0-9-]+)`").FindAllStringSubmatch(first, -1) {
			named[m[1]]++
		}
	}
	targets := regexp.MustCompile(`(?m)^([a-z0-9-]+):.*## `).FindAllStringSubmatch(string(makefile), -1)
	require.NotEmpty(t, targets)
	have := map[string]bool{}
	for _, m := range targets {
		have[m[1]] = true
		assert.Equal(t, 1, named[m[1]], "make %s is named once in the README's Development table", m[1])
	}
	for name := range named {
		assert.True(t, have[name], "the README names make %s, which the Makefile lacks", name)
	}
}
