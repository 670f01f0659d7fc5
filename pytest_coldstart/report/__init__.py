"""What people read: terminal tables, PR markdown, figures, the HTML report, efficiency, anchors."""
