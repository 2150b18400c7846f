# The chart of bench/results/results.md: one bar per scenario from parity
# (1×) to its ratio Corral ÷ baseline, on a log scale, coloured by its
# result; a black tick marks the target ratio where there is one. The arrow
# after a name says which way is better (↓ a time or a size, ↑ a rate).
#
# bench/harness.exs calls it with:
#   gnuplot -e "data='chart.tsv'; out='results.svg'; n=ROWS; xmin=..; xmax=.." chart.gp
# data: tab-separated name, ratio, target ratio (NaN: none), result.

set terminal svg size 900, 110 + 34 * n dynamic noenhanced font "sans,13" background "#ffffff"
set output out
set datafile separator "\t"
set logscale x
set xrange [xmin:xmax]
set yrange [n - 0.5 : -0.5]
set format x "%g×"
set xlabel "Corral ÷ baseline (log scale)"
set grid xtics lc rgb "#dddddd"
set ytics nomirror scale 0
set xtics nomirror
set border 3
set key outside top center horizontal
set arrow from 1, graph 0 to 1, graph 1 nohead dt 2 lc rgb "#555555"

colour(s) = s eq "pass" ? 0x2e8b57 : s eq "miss" ? 0xc0392b : 0x8c8c8c
lo(r) = r < 1 ? r : 1
hi(r) = r < 1 ? 1 : r

plot data using (sqrt($2)):0:(lo($2)):(hi($2)):($0 - 0.35):($0 + 0.35):(colour(strcol(4))):ytic(1) \
       with boxxyerror fill solid 0.85 noborder lc rgb variable notitle, \
     data using 3:($0 - 0.45):(0):(0.9) with vectors nohead lw 3 lc rgb "black" title "target", \
     data using (hi($2)):0:(sprintf(" %.3g×", $2)) with labels left notitle, \
     NaN with boxes fill solid 0.85 lc rgb "#2e8b57" title "pass", \
     NaN with boxes fill solid 0.85 lc rgb "#c0392b" title "miss", \
     NaN with boxes fill solid 0.85 lc rgb "#8c8c8c" title "no target"
