package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weir-metrics/weir/pkg/pipeline"
)

// checkCommand validates files without running anything.
func checkCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "check", Short: "Validate files weir reads"}
	cmd.AddCommand(&cobra.Command{
		Use:   "pipelines DIR",
		Short: "Validate the pipeline files of DIR (default.yaml and <tenant>.yaml); each problem is printed as file:line: problem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := pipeline.ReadDir(args[0])
			set, lerr := pipeline.LoadDir(args[0])
			if lerr != nil {
				return fmt.Errorf("pipelines in %s refused:\n%w", args[0], lerr)
			}
			if err != nil {
				return err
			}
			if len(files) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s has no pipeline files: every tenant gets no rules, guard rails or budget\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d pipeline files OK (%d tenants with their own file)\n", len(files), len(set.Tenants()))
			return nil
		},
	})
	return cmd
}
