package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weir-metrics/weir/pkg/auth"
)

// authCommand makes credentials for the tenants file (docs/auth.md).
func authCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Make credentials for the tenants file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "token",
		Short: "Print a new random token and the line of its hash for the tenants file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := auth.NewToken()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "token: %s\nhash:  %s\n", tok, auth.HashToken(tok))
			return err
		},
	})
	var bcrypt bool
	hash := &cobra.Command{
		Use:   "hash",
		Short: "Hash a secret read from standard input (one line) for the tenants file",
		Long: "Hash a secret read from standard input for the tenants file: sha256 by default, for tokens\n" +
			"and generated passwords; --bcrypt for passwords people chose. Reading the secret from\n" +
			"standard input keeps it out of the shell history: `weir auth hash --bcrypt < secret.txt`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the secret: %w", err)
			}
			secret := strings.TrimRight(line, "\r\n")
			if secret == "" {
				return errors.New("no secret on standard input")
			}
			h := auth.HashToken(secret)
			if bcrypt {
				if h, err = auth.HashPassword(secret); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
	hash.Flags().BoolVar(&bcrypt, "bcrypt", false, "bcrypt instead of sha256, for passwords people chose")
	cmd.AddCommand(hash)
	return cmd
}
